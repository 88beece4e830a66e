"""The designs Tessera is measured against (bench/onsale_vs_baselines.py, bench/write_path.py).

- `textbook`: every request one PostgreSQL transaction, `SELECT … FOR UPDATE` on the seat rows
  (`SKIP LOCKED` for best-available), availability read from the database.
- `cache`: the common cache design: a Redis key per held seat (`SET NX PX` in one Lua script per
  hold, all or nothing), checkout written to PostgreSQL, availability read by scanning Redis.
- `common`: what both share: the bare-ASGI server (same API shape as Tessera's edge), request
  decoding, the seat-map encoding (`tessera_core.encode_event`, the bytes Tessera serves) and the
  adjacent-run search over availability bitmaps.

Each baseline is served by Granian with one worker, in its own process, started by the bench
script that measures it (`--serve-textbook`, `--serve-cache`), configured by `BENCH_BASELINE_*`
environment variables (common.ENV_*).
"""
