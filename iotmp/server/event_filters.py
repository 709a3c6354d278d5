r"""Event-subscription filters matched without backtracking.

Thinger.io's event filters are written like ``"esp.*"``, ``".*"`` or
``"device_.*"``. A filter is read as a glob: ``.*`` and ``*`` match any run of
characters, ``.`` and ``?`` any one character, ``\x`` the character ``x``;
everything else matches itself. The whole field must match. Matching is the
classic two-pointer wildcard algorithm: time grows with ``len(pattern) *
len(text)`` at worst and never exponentially, whatever the client sends, and
a filter is at most ``max_length`` characters.
"""

from __future__ import annotations

from typing import Final

_STAR: Final = object()
_ANY: Final = object()
Token = str | object


class FilterError(ValueError):
    """A filter string is not acceptable (too long)."""


def compile_filter(text: str, max_length: int = 256) -> tuple[Token, ...]:
    """Tokens of a filter: literal characters, ``_ANY`` and ``_STAR`` (runs merged)."""
    if len(text) > max_length:
        raise FilterError(f"filter longer than {max_length} characters")
    tokens: list[Token] = []
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n:
            tokens.append(text[i + 1])
            i += 2
            continue
        if char == "." and i + 1 < n and text[i + 1] == "*":
            token: Token = _STAR
            i += 2
        elif char == "*":
            token = _STAR
            i += 1
        elif char in ".?":
            token = _ANY
            i += 1
        else:
            token = char
            i += 1
        if token is _STAR and tokens and tokens[-1] is _STAR:
            continue
        tokens.append(token)
    return tuple(tokens)


def matches(tokens: tuple[Token, ...], text: str) -> bool:
    """Whether ``text`` matches the compiled filter as a whole."""
    t = p = 0
    star = -1  # position after the last star seen
    resume = 0  # text position the last star is matching up to
    n_text = len(text)
    n_tokens = len(tokens)
    while t < n_text:
        if p < n_tokens:
            token = tokens[p]
            if token is _STAR:
                star = p + 1
                resume = t
                p += 1
                continue
            if token is _ANY or token == text[t]:
                t += 1
                p += 1
                continue
        if star < 0:
            return False
        resume += 1  # let the star swallow one more character and retry
        t = resume
        p = star
    while p < n_tokens and tokens[p] is _STAR:
        p += 1
    return p == n_tokens


class EventFilter:
    """One subscription: the event name and field filters, all of which must match."""

    __slots__ = ("patterns", "raw")

    def __init__(
        self, event: str, filters: dict[str, object], raw: dict[str, object], max_length: int
    ) -> None:
        self.raw = raw
        self.patterns: dict[str, tuple[Token, ...]] = {"event": compile_filter(event, max_length)}
        for key, value in filters.items():
            self.patterns[str(key)] = compile_filter(str(value), max_length)

    def matches(self, event: dict[str, object]) -> bool:
        """Whether every filtered field of ``event`` matches."""
        for key, tokens in self.patterns.items():
            value = event.get(key)
            if value is None or not matches(tokens, str(value)):
                return False
        return True


__all__ = ["EventFilter", "FilterError", "compile_filter", "matches"]
