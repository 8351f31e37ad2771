"""Message -> tokens, with variable tokens replaced by ``<*>``, without per-dataset settings.

One fixed rule set for every log: a token is variable when it holds a digit (counters, ids,
addresses, sizes, durations, timestamps), is a hex run, or is a quoted string. Words without
digits (tenant, user or table names) are kept here and abstracted later by the grouping, which
sees how many values a position takes (see :mod:`vigil_log_analyzer.domain.grouping`).

Tokens are split on whitespace and on punctuation that separates fields (``= , : ; ( ) [ ] { }
< > |``), but not on ``.``, ``-``, ``_``, ``/`` or ``@``, so a dotted logger, a path or a host
name stays one token. The separators themselves are dropped from the tokens: ``"a=1"`` and
``"a: 1"`` have the same tokens (``a`` ``<*>``), which keeps the token count of a logging
statement stable while its values change.
"""

from __future__ import annotations

import re

WILDCARD = "<*>"
"""The placeholder of a variable token."""

# Values that span separators, replaced before splitting so that an IP with a port, a URL or a
# timestamp stays one variable token instead of several.
_SPANNING = re.compile(
    r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+"  # URL
    r"|[\w.+-]+@[\w-]+(?:\.[\w-]+)+"  # e-mail
    r"|\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"  # IPv4[:port]
    r"|\b(?:[0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}\b"  # MAC
    r"|\b\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2})?(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?"  # ISO
    r"|\b\d{1,2}:\d{2}:\d{2}(?:[.,:]\d+)?\b"  # clock time
    r"|\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)\s+(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r"\s+\d{1,2}\b"  # ctime date
    r"|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+\d{1,2}\b"  # month day
    r"|\b[\w-]+(?:\.[\w-]+)*:\d+\b"  # host:port
    r"|\b\d+(?:\.\d+)?\s*(?:ms|sec|secs|seconds?|mins?|minutes?|hours?|[kKMGT]i?B|bytes?)\b"
    r"|(?<![\w.])/[^\s\"'<>()\[\]{},;|]*/[^\s\"'<>()\[\]{},;|]*"  # path, URL path
    r"|\([^()\n]{0,40}\d[^()\n]{0,40}\)"  # parenthesized numbers: "(1.16 KB)", "(uid=0)"
)
_SPLIT = re.compile(r"(?:[\s=,:;()\[\]{}<>|]|\.{2,})+")
_HEX = re.compile(r"^(?:0[xX])?[0-9a-fA-F]{8,}$")
_VARIABLE = re.compile(r"[\d\x00]")


def tokens_of(message: str) -> tuple[str, ...]:
    """The tokens of the first line of ``message``, variable ones replaced by ``<*>``.

    Only the first line is tokenized: continuation lines (stack frames) are summarized by
    :func:`vigil_log_analyzer.domain.records.signature_text` before they get here.
    Deterministic and idempotent on its own output.
    """
    text = _SPANNING.sub("\x00", message)
    out = []
    for token in _SPLIT.split(text):
        if not token:
            continue
        if _VARIABLE.search(token) or _HEX.match(token):
            if not out or out[-1] != WILDCARD:
                out.append(WILDCARD)
            continue
        out.append(token)
    return tuple(out)
