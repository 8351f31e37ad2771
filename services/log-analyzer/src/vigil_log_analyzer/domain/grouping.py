"""Grouping token signatures into templates: which positions are constant, which are variable.

The input is a bag of distinct token signatures (see :mod:`vigil_log_analyzer.domain.tokens`)
with their counts. Signatures of the same length are grouped the way Brain (Yu et al., IEEE TSC
2023) does it, which needs no similarity threshold and so does not fragment:

1. Within one length, count how often each (position, token) occurs.
2. A signature's *root* is its set of tokens that share the frequency most of its tokens have
   (ties go to the higher frequency): the words every line of its logging statement repeats.
   Signatures with the same root start one group. Tokens more frequent than the root are
   left out of it on purpose: a word value shared with another statement of the same length
   ("tenant acme" in two statements) would otherwise split the rarer statement by value.
3. Inside a group, the other positions are split top-down: the position with the fewest
   distinct values is a constant (and splits the group) while it has at most
   :data:`MAX_CONSTANT_VALUES` values and no wildcard among them; every remaining position
   is variable.

Word-valued fields (user, table, tenant names) end up variable because they take many values
at one position of one statement; two statements of the same length stay apart because their
roots differ or because a low-cardinality position splits them.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from vigil_log_analyzer.domain.tokens import WILDCARD

Signature = tuple[str, ...]

_IDENTIFIER = re.compile(r"[.\-_/@:]")

MAX_CONSTANT_VALUES = 3
"""A position with more distinct words than this inside one group is a variable."""


def group_signatures(counts: Mapping[Signature, int]) -> list[list[Signature]]:
    """Partitions ``counts``' signatures into groups, one per logging statement.

    Args:
        counts: Distinct signatures and how many lines had each (weights of the frequencies).

    Returns:
        The groups, each a list of signatures, in a fixed order (sorted), so the same input
        gives the same output whatever the mapping's order.
    """
    by_length: dict[int, list[Signature]] = defaultdict(list)
    for signature in counts:
        by_length[len(signature)].append(signature)
    groups: list[list[Signature]] = []
    for length in sorted(by_length):
        groups.extend(_group_length(sorted(by_length[length]), counts))
    return _merge_same_skeleton(groups)


def skeleton(template: Signature) -> Signature:
    """The constant tokens of ``template``, in order: what stays when variables are dropped."""
    return tuple(token for token in template if token != WILDCARD)


def _merge_same_skeleton(groups: list[list[Signature]]) -> list[list[Signature]]:
    """Joins groups whose templates have the same constant tokens in the same order: one
    statement whose variable part sometimes spans more tokens ("1190 bytes (1.16 KB) sent" and
    "0 bytes sent")."""
    merged: dict[Signature, list[Signature]] = {}
    for group in groups:
        key = skeleton(template_of_group(group))
        if not key:
            key = ("\x00", str(len(group[0])))
        merged.setdefault(key, []).extend(group)
    return list(merged.values())


def template_of_group(group: Sequence[Signature]) -> Signature:
    """The template of a group: each position's token where all agree, else ``<*>``."""
    first = group[0]
    return tuple(
        token if all(signature[i] == token for signature in group) else WILDCARD
        for i, token in enumerate(first)
    )


def _group_length(signatures: list[Signature], counts: Mapping[Signature, int]
                  ) -> list[list[Signature]]:
    if len(signatures) == 1:
        return [signatures]
    frequency: Counter[tuple[int, str]] = Counter()
    for signature in signatures:
        weight = counts[signature]
        for position, token in enumerate(signature):
            frequency[(position, token)] += weight
    roots: dict[tuple[tuple[int, str], ...], list[Signature]] = defaultdict(list)
    for signature in signatures:
        roots[_root(signature, frequency)].append(signature)
    groups: list[list[Signature]] = []
    for key in sorted(roots):
        members = roots[key]
        fixed = {position for position, _ in key}
        groups.extend(_split(members, fixed, counts))
    return groups


def _root(signature: Signature, frequency: Counter[tuple[int, str]]
          ) -> tuple[tuple[int, str], ...]:
    """The (position, token) pairs sharing the most common frequency of ``signature``."""
    per_frequency: Counter[int] = Counter(
        frequency[(position, token)] for position, token in enumerate(signature)
        if token != WILDCARD)
    if not per_frequency:
        return ()
    root_frequency = max(per_frequency, key=lambda f: (per_frequency[f], f))
    return tuple((position, token) for position, token in enumerate(signature)
                 if frequency[(position, token)] == root_frequency and token != WILDCARD)


def _looks_variable(values: set[str]) -> bool:
    """A position whose values mix ``<*>`` (a masked number) with identifier-like words, or
    with two or more words, holds data ("rhost=<*>" and "rhost=csnsu.nsuok.edu")."""
    if WILDCARD not in values:
        return False
    words = values - {WILDCARD}
    return len(words) >= 2 or any(_IDENTIFIER.search(word) for word in words)


def _split(members: list[Signature], fixed: set[int], counts: Mapping[Signature, int]
           ) -> list[list[Signature]]:
    """Splits ``members`` on their lowest-cardinality non-fixed position, recursively."""
    if len(members) == 1:
        return [members]
    width = len(members[0])
    best: tuple[int, int] | None = None
    for position in range(width):
        if position in fixed:
            continue
        values = {signature[position] for signature in members}
        if len(values) == 1 or _looks_variable(values):
            continue
        if len(values) <= MAX_CONSTANT_VALUES and (best is None or len(values) < best[0]):
            best = (len(values), position)
    if best is None:
        return [members]
    position = best[1]
    parts: dict[str, list[Signature]] = defaultdict(list)
    for signature in members:
        parts[signature[position]].append(signature)
    out: list[list[Signature]] = []
    for value in sorted(parts):
        out.extend(_split(parts[value], fixed | {position}, counts))
    return out
