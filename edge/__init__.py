"""The edge: micro-cache, rate limits, virtual waiting room and anti-bot in front of a region's
read nodes; writes pass through to the global writer (docs/architecture.md §5, docs/edge.md)."""
