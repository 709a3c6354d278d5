"""Reads and writes of the ``alarm_rules`` and ``alarm_instances`` tables."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from .records import AlreadyExistsError
from .schema import alarm_instances as instances
from .schema import alarm_rules as rules


@dataclass(frozen=True, slots=True)
class StoredRule:
    """A row of ``alarm_rules``."""

    user: str
    rule: str
    source: dict[str, Any] = field(default_factory=dict)
    condition: dict[str, Any] = field(default_factory=dict)
    endpoint: str | None = None
    name: str = ""
    description: str = ""
    enabled: bool = True
    severity: int = 0
    created: int = 0
    modified: int = 0


@dataclass(frozen=True, slots=True)
class StoredInstance:
    """A row of ``alarm_instances``."""

    user: str
    instance: str
    rule: str
    state: str
    value: Any = None
    annotation: str = ""
    raised: int = 0
    acknowledged: int | None = None
    cleared: int | None = None
    modified: int = 0


def _now() -> int:
    return int(time.time() * 1000)


class AlarmStore:
    """Alarm rules and instances of every user in the database behind ``engine``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- rules -------------------------------------------------------------------------

    async def all_rules(self) -> list[StoredRule]:
        """Every user's rules (loaded at start)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(rules))).mappings().all()
        return [StoredRule(**row) for row in rows]

    async def rules_of(self, user: str) -> list[StoredRule]:
        """Return the user's rules, by id."""
        query = select(rules).where(rules.c.user == user).order_by(rules.c.rule)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [StoredRule(**row) for row in rows]

    async def rule(self, user: str, rule: str) -> StoredRule | None:
        """One rule, None when the user has none by that id."""
        query = select(rules).where(rules.c.user == user, rules.c.rule == rule)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else StoredRule(**row)

    async def rule_count(self, user: str) -> int:
        """Return how many rules the user has."""
        query = select(func.count()).select_from(rules).where(rules.c.user == user)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def create_rule(self, record: StoredRule) -> StoredRule:
        """Insert a new rule (:class:`AlreadyExistsError` when the id is taken)."""
        now = _now()
        record = replace(record, created=now, modified=now)
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(rules).values(**asdict(record)))
        except IntegrityError as exc:
            raise AlreadyExistsError(record.rule) from exc
        return record

    async def update_rule(self, record: StoredRule) -> StoredRule | None:
        """Replace every column but ``created``; None when the rule is gone."""
        now = _now()
        values = asdict(record)
        for key in ("user", "rule", "created"):
            del values[key]
        values["modified"] = now
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(rules)
                .where(rules.c.user == record.user, rules.c.rule == record.rule)
                .values(**values)
            )
        return replace(record, modified=now) if result.rowcount else None

    async def delete_rule(self, user: str, rule: str) -> bool:
        """Delete a rule and its instances; False when the rule was not there."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(rules).where(rules.c.user == user, rules.c.rule == rule)
            )
            await conn.execute(
                delete(instances).where(instances.c.user == user, instances.c.rule == rule)
            )
        return bool(result.rowcount)

    # -- instances -----------------------------------------------------------------------

    async def open_instances(self) -> list[StoredInstance]:
        """Every instance not cleared yet (loaded at start)."""
        query = select(instances).where(instances.c.state != "cleared")
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [StoredInstance(**row) for row in rows]

    async def instances_of(
        self, user: str, *, rule: str | None = None, state: str | None = None
    ) -> list[StoredInstance]:
        """Return the user's instances, newest first, optionally of one rule or in one state."""
        query = select(instances).where(instances.c.user == user)
        if rule is not None:
            query = query.where(instances.c.rule == rule)
        if state is not None:
            query = query.where(instances.c.state == state)
        query = query.order_by(instances.c.raised.desc(), instances.c.instance)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).mappings().all()
        return [StoredInstance(**row) for row in rows]

    async def instance(self, user: str, instance: str) -> StoredInstance | None:
        """One instance, None when the user has none by that id."""
        query = select(instances).where(instances.c.user == user, instances.c.instance == instance)
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).mappings().first()
        return None if row is None else StoredInstance(**row)

    async def add_instance(self, record: StoredInstance) -> None:
        """Insert a new instance."""
        async with self.engine.begin() as conn:
            await conn.execute(insert(instances).values(**asdict(record)))

    async def change_instance(self, user: str, instance: str, changes: Mapping[str, Any]) -> bool:
        """Change some columns of an instance; False when it is gone."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(instances)
                .where(instances.c.user == user, instances.c.instance == instance)
                .values(**dict(changes))
            )
        return bool(result.rowcount)

    async def delete_instance(self, user: str, instance: str) -> bool:
        """Delete one instance; False when it was not there."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                delete(instances).where(instances.c.user == user, instances.c.instance == instance)
            )
        return bool(result.rowcount)


__all__ = ["AlarmStore", "StoredInstance", "StoredRule"]
