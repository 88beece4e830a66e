"""The edge: micro-cache, rate limits, virtual waiting room and anti-bot in front of a region.

A Litestar app (ARCHITECTURE.md §5). Built by the edge issue.
"""
