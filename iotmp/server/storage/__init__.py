"""Persistent storage of what users create: SQLite by default, PostgreSQL by URL.

One schema (:mod:`.schema`, SQLAlchemy Core) behind async engines (aiosqlite,
asyncpg); Alembic migrations shipped in ``migrations/`` run at start (alembic is
imported only when the database is not at the newest revision).

Modules: :mod:`.records` (plain records), :mod:`.hashing` (credential hashes),
:mod:`.engine` (URLs, engines), :mod:`.migrate` (Alembic), :mod:`.repository`
(:class:`~.repository.Storage`, every read and write). This package imports
none of them, so that importing the server does not load SQLAlchemy until the
storage is opened.
"""
