"""The writer's database layer: schema, engine, the serialization-retry helper."""
