"""Log templates: a message with its variable parts replaced by placeholders.

Two messages that differ only in ids, numbers, addresses or durations get the same template,
so "order 42 failed" and "order 97 failed" are one cluster. Placeholders::

    <UUID> <EMAIL> <URL> <IP> <TIME> <PATH> <DURATION> <HEX> <NUM> <STR> key=<*>

A multi-line record with a stack trace (Java ``\\tat ...`` frames, or a Python ``Traceback``)
becomes ``first line | exception class | at first frame``, line numbers dropped, so a trace
thrown from the same place matches across builds even after unrelated lines moved.
"""

from __future__ import annotations

import hashlib
import re

_SEPARATOR = " | "

# Order matters: wider patterns first, so an IP is not eaten as numbers and a duration's
# number is not a bare <NUM>. Each replacement removes what its pattern needs (digits,
# quotes, "@", "/"), which is why applying the list again changes nothing.
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<UUID>",
    ),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<EMAIL>"),
    (re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s\"'<>]+"), "<URL>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<IP>"),
    (
        re.compile(
            r"\b\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
            r"|\b\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?\b"
        ),
        "<TIME>",
    ),
    (re.compile(r"(?<![\w<>./:-])(?:/[\w.@%+~-]+)+/?"), "<PATH>"),
    (
        re.compile(
            r"\b\d+(?:\.\d+)?\s?(?:nanoseconds|microseconds|milliseconds|seconds|minutes|hours"
            r"|secs|sec|mins|min|ns|us|µs|ms|s|m|h)\b"
        ),
        "<DURATION>",
    ),
    (re.compile(r"\b0[xX][0-9a-fA-F]+\b"), "<HEX>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{6,}\b"), "<HEX>"),
    (re.compile(r"\b\d+(?:\.\d+)?"), "<NUM>"),
    (re.compile(r"\"[^\"]*\"|(?<!\w)'[^'\n]*'(?!\w)"), "<STR>"),
    (re.compile(r"\b(\w+)=(?!<\*>)[^\s,;&)\]}|]+"), r"\1=<*>"),
)
_WHITESPACE = re.compile(r"\s+")
_MAX_PASSES = 8

_JAVA_EXCEPTION = re.compile(
    r"^\s*(?:Caused by:\s*|Exception in thread \"[^\"]*\"\s*)?"
    r"((?:[a-zA-Z_$][\w$]*\.)*[A-Z][\w$]*(?:Exception|Error|Throwable))(?::|\s*$)"
)
_JAVA_FRAME = re.compile(r"^\s*at\s+([\w$./<>-]+)\(([^)]*)\)")
_PYTHON_TRACEBACK = re.compile(r"^\s*Traceback \(most recent call last\):")
_PYTHON_FRAME = re.compile(r"^\s*File \"(?:[^\"]*/)?([^\"/]+)\", line \d+, in (\S+)")
_LINE_NUMBER = re.compile(r":\d+$")


def template_of(message: str) -> str:
    """The template of ``message``: variable parts replaced, whitespace collapsed.

    Idempotent: ``template_of(template_of(m)) == template_of(m)``. For a stack trace the
    result is ``"<first line> | <exception class> | at <first frame>"`` (the parts found only
    in the continuation lines; a one-line message is just abstracted); only the first line's
    message, the class and the frame are kept, so exception messages with data in them
    do not split a cluster.
    """
    lines = [line for line in message.splitlines() if line.strip()]
    if not lines:
        return ""
    # Only continuation lines are searched: a one-line message is never a trace, which keeps
    # the one-line result a fixed point.
    head, rest = lines[0], lines[1:]
    parts = [head]
    exception = exception_class(rest)
    if exception is not None:
        parts.append(exception)
    frame = first_frame(rest)
    if frame is not None:
        parts.append(f"at {frame}")
    return _abstract(_SEPARATOR.join(parts))


def template_id(template: str) -> str:
    """A stable 12-hex-digit id of ``template`` (SHA-1 prefix): same template, same id."""
    return hashlib.sha1(template.encode("utf-8"), usedforsecurity=False).hexdigest()[:12]


def has_exception(message: str) -> bool:
    """Whether ``message`` carries an exception: an exception line, a frame or a traceback."""
    lines = message.splitlines()
    return any(
        _JAVA_EXCEPTION.match(line)
        or _JAVA_FRAME.match(line)
        or _PYTHON_TRACEBACK.match(line)
        or _PYTHON_FRAME.match(line)
        for line in lines
    )


def exception_class(lines: list[str]) -> str | None:
    """Class name of the top exception: the first exception line of a Java trace, the last
    one of a Python traceback (Python prints the raised exception at the bottom)."""
    found = [match.group(1) for line in lines if (match := _JAVA_EXCEPTION.match(line))]
    if not found:
        return None
    is_python = any(_PYTHON_TRACEBACK.match(line) for line in lines)
    return found[-1] if is_python else found[0]


def first_frame(lines: list[str]) -> str | None:
    """Where the exception was thrown, without line numbers: the first Java ``at`` frame, or
    the innermost (last) Python frame, as ``file in function``."""
    for line in lines:
        if match := _JAVA_FRAME.match(line):
            source = _LINE_NUMBER.sub("", match.group(2))
            return f"{match.group(1)}({source})"
    python = [match for line in lines if (match := _PYTHON_FRAME.match(line))]
    if python:
        return f"{python[-1].group(1)} in {python[-1].group(2)}"
    return None


def _abstract(text: str) -> str:
    """Applies the placeholder rules until nothing changes (each pass only removes data)."""
    text = _WHITESPACE.sub(" ", text).strip()
    for _ in range(_MAX_PASSES):
        previous = text
        for pattern, placeholder in _RULES:
            text = pattern.sub(placeholder, text)
        text = _WHITESPACE.sub(" ", text).strip()
        if text == previous:
            break
    return text
