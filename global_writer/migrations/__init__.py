"""Alembic migrations of the writer's database (entry points: global_writer.db.migrate)."""
