"""Hostile input: valid ids that break naive CSV, HTML or plotting code, and records made to
break a naive parser. Each record is labelled with what the job must do with it.

`HOSTILE_IDS` are ids the job accepts (non-blank strings): quotes, commas, CR/LF, NUL,
backslashes, markup, emoji, right-to-left and zero-width characters, spaces around them. Every
exported CSV and the report must give each back exactly (docs/run-format.md).
`hostile_records()` builds the fuzz corpus of tests/integration/test_fuzz_kafka.py: more than 60
kinds of record (random bytes, invalid UTF-8, huge and deeply nested values, NaN/Infinity/1e400,
duplicate keys, every blank character as an id, ...), each with the reason the job must give it,
or None for a valid event (whose ids are then `HOSTILE_IDS`).
"""

from __future__ import annotations

# Valid ids, each hostile to something downstream. The last is long but fits in a record.
HOSTILE_IDS: tuple[str, ...] = (
    'say "hi"',
    '"',
    '""',
    "a,b",
    'x,"y"\r\nz',
    "cr\ronly",
    "lf\nonly",
    "nul\x00mid",
    "\x00",
    '\x00"',
    '"\x00',
    "back\\slash",
    '\\"',
    "end\\",
    " lead",
    "trail ",
    " both ",
    "tab\tin",
    "<script>alert(1)</script>",
    "&amp; &lt;",
    "emoji\U0001f600",
    "\U0001f469\u200d\U0001f469\u200d\U0001f467",
    "rtl\u202eevil",
    "\u05e2\u05d1\u05e8\u05d9\u05ea",
    "\u0645\u0631\u062d\u0628\u0627",
    "zw\u200bj",
    "\u200b",
    "\ufeffbom",
    "NA",
    "null",
    "nan",
    "#hash",
    "'single",
    "=1+1",
    "$x$",
    "$\\frac$",
    "\x7f\x01",
    "nel\x85",
    "u:p:",
    "long-" + "x" * 2000,
)
