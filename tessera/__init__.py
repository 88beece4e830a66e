"""Tessera's shared Python kernel, the floor every tier stands on: limits, wire contracts, the
venue format, the seat-map decoder, auth, observability and the one web layer. Nothing
tier-specific; operator tooling stands above the tiers, in `tessera_ops`."""
