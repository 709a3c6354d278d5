"""Decoder limits: what a peer may make us parse or allocate."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024
DEFAULT_MAX_DEPTH = 32
# Decoders never nest deeper than this, whatever ``max_depth`` says: the pure
# decoder recurses once per level (Python's recursion limit) and the compiled
# one on the C stack, so both stop here with the same error.
MAX_DEPTH_CAP = 200


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds applied while decoding.

    ``max_message_size`` caps an IOTMP message body (the header's size field);
    ``max_depth`` caps the nesting of PSON arrays and maps. Varint length is
    fixed by the protocol: 5 bytes for 32-bit values (header, keys, varint
    fields) and 10 bytes for 64-bit PSON values.
    """

    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    max_depth: int = DEFAULT_MAX_DEPTH


DEFAULT_LIMITS = Limits()

# Before a peer has authenticated, its first message (CONNECT: three short
# strings and a flat parameter map) is all it may make us parse.
DEFAULT_HANDSHAKE_MAX_SIZE = 4096
DEFAULT_HANDSHAKE_MAX_DEPTH = 4
DEFAULT_HANDSHAKE_LIMITS = Limits(
    max_message_size=DEFAULT_HANDSHAKE_MAX_SIZE, max_depth=DEFAULT_HANDSHAKE_MAX_DEPTH
)

PSON_INT_MIN = -(2**63)
PSON_INT_MAX = 2**64 - 1


def value_problem(value: object, limits: Limits = DEFAULT_LIMITS) -> str | None:
    """Why a peer with ``limits`` would refuse ``value`` as a PSON field, or None.

    Checks what the decoders check (container nesting up to ``max_depth``,
    integers within -2**63 .. 2**64-1, string map keys, the PSON value model)
    without recursion, so any value can be checked.
    """
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, bool) or item is None or isinstance(item, float | str):
            continue
        if isinstance(item, int):
            if not PSON_INT_MIN <= item <= PSON_INT_MAX:
                return f"integer {item} is outside -2**63 .. 2**64-1"
            continue
        if isinstance(item, bytes | bytearray):
            continue
        if isinstance(item, dict | list | tuple):
            if depth >= limits.max_depth:
                return f"value nested deeper than {limits.max_depth} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    if not isinstance(key, str):
                        return f"map key {key!r} is not a string"
                    stack.append((child, depth + 1))
            else:
                stack.extend((child, depth + 1) for child in item)
            continue
        return f"{type(item).__name__} values cannot be sent"
    return None
