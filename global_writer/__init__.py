"""The global writer: holds, releases, checkout and event admin; the only writer of the database.

A Litestar app served by Granian (docs/architecture.md §3). It decides claims with `tessera_core`
and lets the database enforce them. Built by the global writer issue.
"""
