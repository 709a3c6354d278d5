"""Hypothesis strategies for PSON values and IOTMP messages."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import strategies as st

from iotmp.protocol import Message, MessageType, WireType

ints = st.integers(min_value=-(2**63), max_value=2**64 - 1)
floats = st.floats(allow_nan=True, allow_infinity=True)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    ints,
    st.integers(min_value=-40, max_value=1100),  # tag boundaries: 30/31, 1023/1024
    floats,
    st.text(),
    st.text(alphabet="ab", max_size=40),
    st.binary(),
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=8),
        st.dictionaries(st.text(max_size=10), children, max_size=8),
    )


values = st.recursive(scalars, _containers, max_leaves=24)


def depth(value: Any) -> int:
    """Container nesting of ``value`` (a scalar has depth 0)."""
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@st.composite
def messages(draw: st.DrawFn) -> Message:
    """A random message with explicit wire types that fit the values."""
    mtype = draw(st.one_of(st.sampled_from(list(MessageType)), st.integers(0, 2**32 - 1)))
    fids = draw(
        st.lists(
            st.one_of(st.integers(1, 4), st.integers(0, 2**29 - 1)),
            unique=True,
            max_size=5,
        )
    )
    fields: dict[int, Any] = {}
    wire_types: dict[int, WireType] = {}
    for fid in fids:
        value = draw(st.one_of(st.integers(0, 2**32 - 1), values))
        fields[fid] = value
        allowed = [WireType.PSON, WireType.PSON_LEGACY]
        if type(value) is int and 0 <= value < 2**32:
            allowed.append(WireType.VARINT)
        choice = draw(st.sampled_from([*allowed, None]))
        if choice is not None:
            wire_types[fid] = choice
    return Message(mtype, fields, wire_types)


def examples(n: int) -> int:
    """Scale an example count by ``IOTMP_HYPOTHESIS_SCALE`` (default 1; e.g. 20 for a soak run)."""
    return max(1, int(n * float(os.environ.get("IOTMP_HYPOTHESIS_SCALE", "1"))))
