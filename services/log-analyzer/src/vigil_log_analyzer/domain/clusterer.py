"""Streaming clustering with stable ids and bounded memory.

A :class:`Clusterer` holds the distinct signatures seen so far (up to ``max_signatures``) and
the cluster each belongs to. Lines arrive in batches; a line whose signature is known gets its
cluster at once (a dict lookup: the common case, and why throughput is high). When a batch
brings new signatures, the signatures are grouped again (:func:`grouping.group_signatures`)
and the new grouping is reconciled with the old ids:

- a group holding signatures of existing clusters keeps the oldest of their ids; the other
  ids become aliases of it (clusters only ever merge, they never split, so an id given out
  keeps meaning the same events: feedback given once keeps applying, issue 6);
- a group of only new signatures gets a new id: the SHA-1 prefix of its template, so the same
  statement gets the same id in another service or another run.

Because grouping decides variable positions from how many values they take, a mostly-variable
message joins its cluster as soon as its statement has shown a few values; there is no
similarity threshold that a long message keeps missing (Drain's fragmentation).

Once ``max_signatures`` are held, a new signature is matched against the templates of its
length (constant positions must agree) and otherwise becomes a cluster of its own without a
regrouping, so memory stays bounded however long the stream.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from vigil_log_analyzer.domain import grouping
from vigil_log_analyzer.domain.grouping import Signature
from vigil_log_analyzer.domain.tokens import WILDCARD

MAX_SIGNATURES = 20_000
"""Default bound on the distinct signatures a clusterer remembers."""


def cluster_id_of(template: Sequence[str]) -> str:
    """Stable 12-hex-digit id of a template (SHA-1 prefix of its tokens joined by spaces)."""
    text = " ".join(template)
    return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()[:12]


@dataclass(frozen=True)
class ClusterInfo:
    """What a clusterer knows about one cluster.

    Attributes:
        id: Stable id.
        template: Tokens of its most common signature length, ``<*>`` where they vary.
        count: Lines assigned to it by this clusterer (plus the counts it was seeded with).
        signatures: How many distinct signatures it holds.
    """

    id: str
    template: tuple[str, ...]
    count: int
    signatures: int

    @property
    def template_text(self) -> str:
        """The template as one string, tokens joined by spaces."""
        return " ".join(self.template)


class Clusterer:
    """Assigns stable cluster ids to signatures, batch by batch (see the module docstring).

    Deterministic: the same seed and the same batches give the same ids. Not thread-safe.
    """

    def __init__(self, max_signatures: int = MAX_SIGNATURES):
        self.max_signatures = max_signatures
        self._counts: Counter[Signature] = Counter()
        self._cluster_of: dict[Signature, str] = {}
        self._alias: dict[str, str] = {}
        self._order: dict[str, int] = {}
        self._overflow: dict[Signature, str] = {}

    # -- seeding and export (persistence lives in the handler) --------------------------

    def seed(self, signatures: Iterable[tuple[Signature, str, int]],
             aliases: Mapping[str, str] = {}) -> None:
        """Loads remembered ``(signature, cluster id, count)`` rows and id aliases, oldest
        first (the order decides which id survives a merge)."""
        for signature, cluster, count in signatures:
            self._counts[signature] += count
            self._cluster_of[signature] = cluster
            self._order.setdefault(cluster, len(self._order))
        self._alias.update(aliases)

    def signatures(self) -> list[tuple[Signature, str, int]]:
        """Every remembered ``(signature, canonical cluster id, count)``."""
        return [(s, self.resolve(c), self._counts[s]) for s, c in self._cluster_of.items()]

    def aliases(self) -> dict[str, str]:
        """Merged-away id -> the id it now resolves to."""
        return {alias: self.resolve(alias) for alias in self._alias}

    # -- assignment ---------------------------------------------------------------------

    def resolve(self, cluster: str) -> str:
        """The surviving id of ``cluster`` after merges (itself if never merged)."""
        while cluster in self._alias:
            cluster = self._alias[cluster]
        return cluster

    def assign(self, signatures: Sequence[Signature]) -> list[str]:
        """Cluster ids of ``signatures``, in order, learning new ones first.

        Every id returned is canonical at return time; an id returned by an earlier call may
        since have merged into another (see :meth:`resolve`).
        """
        batch = Counter(signatures)
        new = [s for s in batch if s not in self._cluster_of and s not in self._overflow]
        for signature, count in batch.items():
            if signature in self._cluster_of:
                self._counts[signature] += count
        if new:
            room = max(0, self.max_signatures - len(self._cluster_of))
            learn, overflow = new[:room], new[room:]
            for signature in learn:
                self._counts[signature] += batch[signature]
            self._regroup(learn)
            for signature in overflow:
                self._overflow[signature] = self._match_or_new(signature)
        ids = {s: self.resolve(self._cluster_of.get(s) or self._overflow[s]) for s in batch}
        return [ids[s] for s in signatures]

    def clusters(self) -> list[ClusterInfo]:
        """Every cluster, oldest first."""
        members: dict[str, list[Signature]] = {}
        for signature, cluster in self._cluster_of.items():
            members.setdefault(self.resolve(cluster), []).append(signature)
        out = []
        for cluster, sigs in members.items():
            out.append(ClusterInfo(cluster, _template(sigs, self._counts),
                                   sum(self._counts[s] for s in sigs), len(sigs)))
        return sorted(out, key=lambda info: self._order.get(info.id, 0))

    def _regroup(self, new: list[Signature]) -> None:
        groups = grouping.group_signatures(self._counts)
        for group in groups:
            existing = sorted({self.resolve(self._cluster_of[s]) for s in group
                               if s in self._cluster_of}, key=self._order.__getitem__)
            if existing:
                keep = existing[0]
                for other in existing[1:]:
                    self._alias[other] = keep
            elif any(s in new for s in group):
                keep = self._new_id(_template(group, self._counts))
            else:
                continue
            for signature in group:
                self._cluster_of.setdefault(signature, keep)

    def _new_id(self, template: Sequence[str]) -> str:
        base = cluster_id_of(template)
        cluster, n = base, 1
        while cluster in self._order:
            n += 1
            cluster = cluster_id_of((*template, f"#{n}"))
        self._order[cluster] = len(self._order)
        return cluster

    def _match_or_new(self, signature: Signature) -> str:
        for info in self.clusters():
            template = info.template
            if len(template) == len(signature) and all(
                    t in (WILDCARD, s) for t, s in zip(template, signature, strict=True)):
                return info.id
        return self._new_id(signature)


def _template(signatures: Sequence[Signature], counts: Mapping[Signature, int]) -> Signature:
    """Template of the signatures of the most common length among ``signatures``."""
    by_length: Counter[int] = Counter()
    for signature in signatures:
        by_length[len(signature)] += counts.get(signature, 1)
    length = max(sorted(by_length), key=by_length.__getitem__)
    same = sorted(s for s in signatures if len(s) == length)
    return grouping.template_of_group(same)
