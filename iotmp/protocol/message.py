"""IOTMP message model: types, field ids, wire types and the ``Message`` record.

Encoding and decoding live in :mod:`.codec`; this module only describes what a
message *is*, so the session and the device API can build and read messages
without caring about bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final


class MessageType(IntEnum):
    """Message types (header byte), spec section 4."""

    OK = 0x01
    ERROR = 0x02
    CONNECT = 0x03
    DISCONNECT = 0x04
    KEEP_ALIVE = 0x05
    RUN = 0x06
    DESCRIBE = 0x07
    START_STREAM = 0x08
    STOP_STREAM = 0x09
    STREAM_DATA = 0x0A


class Field(IntEnum):
    """Body field ids, the same for every message type (spec 3.3)."""

    STREAM_ID = 1
    PARAMETERS = 2
    PAYLOAD = 3
    RESOURCE = 4


class WireType(IntEnum):
    """How a field value is encoded (spec 3.2)."""

    VARINT = 0
    PSON_LEGACY = 1
    PSON = 2


class _Absent:
    """Marker for "field not present" (distinct from a present ``None``/null)."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "ABSENT"

    def __bool__(self) -> bool:
        return False


ABSENT: Final = _Absent()


@dataclass(slots=True)
class Message:
    """One IOTMP message.

    ``fields`` maps field id to value in wire order (dict insertion order), so
    a decoded message re-encodes to the same bytes. ``wire_types`` records the
    wire type each field arrived with; when encoding, an entry there overrides
    the default choice (integers 0 <= v < 2**32 as varint, everything else as
    PSON). Unknown message types are kept as plain ``int``.
    """

    type: int
    fields: dict[int, Any] = field(default_factory=dict)
    wire_types: dict[int, WireType] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        type_: int,
        *,
        stream_id: int | None = None,
        parameters: Any = ABSENT,
        payload: Any = ABSENT,
        resource: Any = ABSENT,
    ) -> Message:
        """Make a message with fields in ascending id order (what [Embedded] emits)."""
        fields: dict[int, Any] = {}
        if stream_id is not None:
            fields[Field.STREAM_ID] = stream_id
        if parameters is not ABSENT:
            fields[Field.PARAMETERS] = parameters
        if payload is not ABSENT:
            fields[Field.PAYLOAD] = payload
        if resource is not ABSENT:
            fields[Field.RESOURCE] = resource
        return cls(type_, fields)

    def has(self, field_id: int) -> bool:
        """Whether the field is present on the wire."""
        return field_id in self.fields

    def get(self, field_id: int, default: Any = ABSENT) -> Any:
        """Field value, or ``default`` (``ABSENT``) when the field is missing."""
        return self.fields.get(field_id, default)

    @property
    def stream_id(self) -> int:
        """STREAM_ID, or 0 when absent or not an integer (as the references read it)."""
        value = self.fields.get(Field.STREAM_ID, 0)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        return 0

    @property
    def parameters(self) -> Any:
        """PARAMETERS, or ``ABSENT``."""
        return self.fields.get(Field.PARAMETERS, ABSENT)

    @property
    def payload(self) -> Any:
        """PAYLOAD, or ``ABSENT``."""
        return self.fields.get(Field.PAYLOAD, ABSENT)

    @property
    def resource(self) -> Any:
        """RESOURCE, or ``ABSENT``."""
        return self.fields.get(Field.RESOURCE, ABSENT)

    @property
    def type_name(self) -> str:
        """Readable name of the type, for logs."""
        try:
            return MessageType(self.type).name
        except ValueError:
            return f"UNKNOWN({self.type})"
