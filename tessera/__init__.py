"""Tessera's shared Python kernel: limits, wire contracts, the venue format, the reference seat
model and seat-map decoder; operator tooling in `tessera.tooling`. Nothing tier-specific."""
