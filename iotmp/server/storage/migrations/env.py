"""Alembic environment: migrations run on the connection :mod:`..migrate` hands over."""

from __future__ import annotations

from alembic import context

from iotmp.server.storage.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the migrations through iotmp.server.storage.migrate")
# Batch mode: SQLite can only change a table by copying it.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
