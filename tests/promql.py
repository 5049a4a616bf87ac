"""The metric names a PromQL expression reads, for checking dashboards and alert rules against
a scrape. A small lexer for the expressions this repository writes (selectors, functions,
aggregations with by/without, vector matching, ranges, Grafana's $variables), not a parser."""

from __future__ import annotations

import re

KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on",
                      "ignoring", "group_left", "group_right", "inf", "nan", "atan2"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGE = re.compile(r"\[[^\]]*\]")
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_CALL = re.compile(r"\b([a-zA-Z_][a-zA-Z0-9_]*)\s*\(")
_NAME = re.compile(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)")


def metric_names(expr: str) -> set[str]:
    """The metric names `expr` selects (function and aggregation names, keywords, label names
    and values, ranges and numbers left out); ValueError if its brackets do not balance."""
    text = _VARIABLE.sub("1m", _STRING.sub('""', expr))
    for opening, closing in ("()", "[]", "{}"):
        if text.count(opening) != text.count(closing):
            raise ValueError(f"unbalanced {opening}{closing} in {expr!r}")
    text = _RANGE.sub(" ", _MATCHERS.sub(" ", _GROUPING.sub(" ", text)))
    text = _CALL.sub("(", text)
    return {name for name in _NAME.findall(text) if name.lower() not in KEYWORDS}
