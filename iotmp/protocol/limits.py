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
