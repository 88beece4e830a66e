"""The regional read node: live seat maps, SSE deltas and friends' purchases for one region.

A Litestar app served by Granian (docs/architecture.md §4), fed by the region's JetStream mirror and
keeping every section as a `tessera_core.SeatMap`. Built by the regional read node issue.
"""
