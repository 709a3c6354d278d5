"""The database schema (SQLAlchemy Core): one table per kind of thing a user creates.

Times are integers in milliseconds since the epoch. JSON columns hold what
clients send as JSON (token permissions, device attributes). New kinds of
data (properties, buckets) get new tables and a new migration.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

# Stable constraint names, so migrations can refer to them on every engine.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

users = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("password_hash", String(255), nullable=True),
    Column("created", BigInteger, nullable=False),
    Column("modified", BigInteger, nullable=False),
)

devices = Table(
    "devices",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("user", String(64), ForeignKey("users.name", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False, default=""),
    Column("description", String(255), nullable=False, default=""),
    Column("type", String(16), nullable=False, default="Generic"),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("credential_hash", String(255), nullable=True),
    Column("attributes", JSON, nullable=False, default=dict),
    Column("created", BigInteger, nullable=False),
    Column("modified", BigInteger, nullable=False),
    Index("ix_devices_user", "user"),
)

access_tokens = Table(
    "access_tokens",
    metadata,
    Column("user", String(64), ForeignKey("users.name", ondelete="CASCADE"), primary_key=True),
    Column("id", String(64), primary_key=True),
    Column("device", String(32), nullable=True),
    Column("name", String(255), nullable=False, default=""),
    Column("description", String(255), nullable=False, default=""),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("allow", JSON, nullable=True),
    Column("deny", JSON, nullable=True),
    Column("resources", JSON, nullable=True),
    # random per issue: a token re-created under a deleted token's id is a new token
    Column("nonce", String(32), nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("modified", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=True),
)

revocations = Table(
    "revocations",
    metadata,
    # user "" for revocations by token fingerprint
    Column("user", String(64), primary_key=True),
    Column("jti", String(128), primary_key=True),
    Column("revoked", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=True),
)

used_refresh_tokens = Table(
    "used_refresh_tokens",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("user", String(64), nullable=False),
    Column("used", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
)

settings = Table(
    "settings",
    metadata,
    # server-wide values kept across restarts (e.g. the generated token secret)
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# -- device properties (issue 11; migration 0003_properties) ---------------------------

device_properties = Table(
    "device_properties",
    metadata,
    # a device's properties go with it (ON DELETE CASCADE; SQLite has foreign_keys=ON)
    Column(
        "device",
        String(32),
        ForeignKey("devices.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("property", String(64), primary_key=True),
    Column("name", String(255), nullable=False, default=""),
    Column("description", String(255), nullable=False, default=""),
    Column("type", String(16), nullable=False, default=""),
    Column("value", JSON, nullable=False),
    # bytes of the value's compact JSON: the per-device total is one SUM, not a scan of values
    Column("size", BigInteger, nullable=False),
    # Thinger's optional "perm" and "form" members, kept as sent (None when absent)
    Column("extra", JSON, nullable=True),
    Column("created", BigInteger, nullable=False),
    Column("modified", BigInteger, nullable=False),
)


# -- buckets and their records (issue 11; migration 0004_buckets) ----------------------

buckets = Table(
    "buckets",
    metadata,
    Column("user", String(64), ForeignKey("users.name", ondelete="CASCADE"), primary_key=True),
    Column("bucket", String(32), primary_key=True),
    Column("name", String(255), nullable=False, default=""),
    Column("description", String(255), nullable=False, default=""),
    Column("enabled", Boolean, nullable=False, default=True),
    # Thinger's "config": {"source": "api" | "write" | "device" | "mqtt", ...}
    Column("config", JSON, nullable=False, default=dict),
    # Thinger's "retention": {"period": n, "unit": "hours" | ...}, plus "max_records"
    Column("retention", JSON, nullable=True),
    Column("created", BigInteger, nullable=False),
    Column("modified", BigInteger, nullable=False),
)

bucket_records = Table(
    "bucket_records",
    metadata,
    # INTEGER PRIMARY KEY on SQLite is the rowid (autoincrement without a sequence table)
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("user", String(64), nullable=False),
    Column("bucket", String(32), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("data", JSON, nullable=False),
    ForeignKeyConstraint(
        ["user", "bucket"],
        ["buckets.user", "buckets.bucket"],
        name="fk_bucket_records_bucket",
        ondelete="CASCADE",
    ),
    # every read is a time range of one bucket: (user, bucket, ts) answers it from the index
    Index("ix_bucket_records_user_bucket_ts", "user", "bucket", "ts"),
)


# -- endpoints, alarm rules and alarm instances (issue 11; migration 0005_endpoints_alarms) --

endpoints = Table(
    "endpoints",
    metadata,
    Column("user", String(64), ForeignKey("users.name", ondelete="CASCADE"), primary_key=True),
    Column("endpoint", String(64), primary_key=True),
    Column("name", String(255), nullable=False, default=""),
    Column("description", String(255), nullable=False, default=""),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("type", String(64), nullable=False),
    # url, method, headers (secrets in clear: they are needed to call), body template...
    Column("config", JSON, nullable=False),
    Column("created", BigInteger, nullable=False),
    Column("modified", BigInteger, nullable=False),
)

alarm_rules = Table(
    "alarm_rules",
    metadata,
    Column("user", String(64), ForeignKey("users.name", ondelete="CASCADE"), primary_key=True),
    Column("rule", String(64), primary_key=True),
    Column("name", String(255), nullable=False, default=""),
    Column("description", String(255), nullable=False, default=""),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("severity", BigInteger, nullable=False, default=0),
    Column("source", JSON, nullable=False),
    Column("condition", JSON, nullable=False),
    Column("endpoint", String(64), nullable=True),
    Column("created", BigInteger, nullable=False),
    Column("modified", BigInteger, nullable=False),
)

alarm_instances = Table(
    "alarm_instances",
    metadata,
    Column("user", String(64), ForeignKey("users.name", ondelete="CASCADE"), primary_key=True),
    Column("instance", String(64), primary_key=True),
    Column("rule", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("value", JSON, nullable=True),
    Column("annotation", String(512), nullable=False, default=""),
    Column("raised", BigInteger, nullable=False),
    Column("acknowledged", BigInteger, nullable=True),
    Column("cleared", BigInteger, nullable=True),
    Column("modified", BigInteger, nullable=False),
    Index("ix_alarm_instances_user_rule", "user", "rule"),
)


__all__ = [
    "access_tokens",
    "alarm_instances",
    "alarm_rules",
    "bucket_records",
    "buckets",
    "device_properties",
    "devices",
    "endpoints",
    "metadata",
    "revocations",
    "settings",
    "used_refresh_tokens",
    "users",
]
