"""Alertmanager-style label matchers: `name="value"`, `name!="v"`, `name=~"re"`, `name!~"re"`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

_MATCHER = re.compile(
    r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|(\S*))\s*$'
)


@dataclass(frozen=True, slots=True)
class Matcher:
    """One parsed matcher; regexes are anchored like Alertmanager's."""

    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether `labels` satisfy this matcher (a missing label is the empty string)."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        # parse_matcher compiles the regex of every =~ and !~ matcher.
        regex = self.regex if self.regex is not None else re.compile(self.value)
        found = regex.fullmatch(actual) is not None
        return found if self.op == "=~" else not found


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher string; raise ValueError saying what is wrong."""
    m = _MATCHER.match(text)
    if m is None:
        raise ValueError(f'invalid matcher {text!r}: expected name="value" (or !=, =~, !~)')
    name, op = m.group(1), m.group(2)
    quoted = m.group(3)
    value = quoted.replace('\\"', '"').replace("\\\\", "\\") if quoted is not None else m.group(4)
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regex in matcher {text!r}: {exc}") from None
    return Matcher(name, op, value, regex)


def matches_all(matchers: Sequence[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches (an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)
