"""PostgreSQL storage of the log analyzer: clusters, signatures, aliases, feedback.

Everything is keyed by (account_id, service): accounts name their services independently, so
one account's known errors never hide another's. Functions take a connection, so the caller
decides the transaction (a verdict and the clusters it learned commit together).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from vigil_log_analyzer.domain import Clusterer, ClusterVerdict, Feedback, Risk


@dataclass(frozen=True)
class ServiceKey:
    """Whose clusters: an account's service."""

    account_id: str
    service: str


@dataclass(frozen=True)
class StoredFeedback:
    """A feedback row as the API returns it."""

    feedback: Feedback
    updated_at: datetime


async def load_clusterer(conn: asyncpg.Connection, key: ServiceKey,
                         max_signatures: int) -> Clusterer:
    """A clusterer seeded with the service's remembered signatures, oldest cluster first."""
    rows = await conn.fetch(
        "SELECT s.signature, s.cluster_id, s.count FROM log_signatures s "
        "LEFT JOIN log_clusters c USING (account_id, service, cluster_id) "
        "WHERE s.account_id = $1 AND s.service = $2 "
        "ORDER BY c.first_seen NULLS LAST, s.cluster_id, s.signature",
        key.account_id, key.service)
    aliases = await conn.fetch(
        "SELECT alias_id, cluster_id FROM log_cluster_aliases "
        "WHERE account_id = $1 AND service = $2", key.account_id, key.service)
    clusterer = Clusterer(max_signatures=max_signatures)
    clusterer.seed(((tuple(r["signature"]), r["cluster_id"], r["count"]) for r in rows),
                   {r["alias_id"]: r["cluster_id"] for r in aliases})
    return clusterer


async def baseline_ids(conn: asyncpg.Connection, key: ServiceKey) -> set[str]:
    """Ids of the clusters seen on a control side before (known with a previous version)."""
    rows = await conn.fetch(
        "SELECT cluster_id FROM log_clusters WHERE account_id = $1 AND service = $2 "
        "AND baseline", key.account_id, key.service)
    return {r["cluster_id"] for r in rows}


async def save_clusters(conn: asyncpg.Connection, key: ServiceKey, clusterer: Clusterer,
                        judged: Iterable[ClusterVerdict], control_ids: Iterable[str],
                        control_examples: dict[str, tuple[str, str]]) -> None:
    """Stores what this verification taught: signatures, merges, clusters, baseline flags.

    Args:
        judged: The test clusters (their template, level and example are stored).
        control_ids: Cluster ids seen on the control side: they become baseline.
        control_examples: For control clusters, ``(level, example)``.
    """
    await conn.executemany(
        "INSERT INTO log_signatures (account_id, service, signature, cluster_id, count) "
        "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (account_id, service, signature) DO UPDATE "
        "SET cluster_id = EXCLUDED.cluster_id, count = EXCLUDED.count, last_seen = now()",
        [(key.account_id, key.service, list(s), c, n) for s, c, n in clusterer.signatures()])
    await conn.executemany(
        "INSERT INTO log_cluster_aliases (account_id, service, alias_id, cluster_id) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT (account_id, service, alias_id) "
        "DO UPDATE SET cluster_id = EXCLUDED.cluster_id",
        [(key.account_id, key.service, a, c) for a, c in clusterer.aliases().items()])
    templates = {info.id: info.template_text for info in clusterer.clusters()}
    rows: dict[str, tuple[str, str, str, bool]] = {}
    baseline = set(control_ids)
    for cid in baseline:
        level, example = control_examples.get(cid, ("INFO", ""))
        rows[cid] = (templates.get(cid, ""), level, example, True)
    for v in judged:
        c = v.cluster
        if c.id not in rows:
            rows[c.id] = (c.template, c.level, c.example, False)
    await conn.executemany(
        "INSERT INTO log_clusters (account_id, service, cluster_id, template, level, example, "
        "baseline) VALUES ($1, $2, $3, $4, $5, $6, $7) "
        "ON CONFLICT (account_id, service, cluster_id) DO UPDATE SET "
        "template = EXCLUDED.template, last_seen = now(), "
        "baseline = log_clusters.baseline OR EXCLUDED.baseline",
        [(key.account_id, key.service, cid, *row) for cid, row in rows.items()])


async def load_feedback(conn: asyncpg.Connection | asyncpg.Pool, key: ServiceKey
                        ) -> list[StoredFeedback]:
    """The service's feedback, newest first; ids merged away resolve to their survivor."""
    rows = await conn.fetch(
        "SELECT coalesce(a.cluster_id, f.cluster_id) AS cluster_id, f.risk, f.reason, "
        "f.template, f.updated_at FROM log_feedback f LEFT JOIN log_cluster_aliases a "
        "ON a.account_id = f.account_id AND a.service = f.service AND a.alias_id = f.cluster_id "
        "WHERE f.account_id = $1 AND f.service = $2 ORDER BY f.updated_at DESC, f.cluster_id",
        key.account_id, key.service)
    return [StoredFeedback(Feedback(r["cluster_id"], Risk(r["risk"]), r["reason"],
                                    r["template"]), r["updated_at"]) for r in rows]


async def set_feedback(pool: asyncpg.Pool, key: ServiceKey, feedback: Feedback
                       ) -> StoredFeedback:
    """Creates or replaces the feedback on one cluster; the template is taken from the
    stored cluster when the caller gave none (IGNORE needs it to match similar clusters)."""
    async with pool.acquire() as conn:
        template = feedback.template or await conn.fetchval(
            "SELECT template FROM log_clusters WHERE account_id = $1 AND service = $2 "
            "AND cluster_id = $3", key.account_id, key.service, feedback.cluster_id) or ""
        row = await conn.fetchrow(
            "INSERT INTO log_feedback (account_id, service, cluster_id, risk, reason, template) "
            "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (account_id, service, cluster_id) "
            "DO UPDATE SET risk = EXCLUDED.risk, reason = EXCLUDED.reason, "
            "template = EXCLUDED.template, updated_at = now() RETURNING updated_at",
            key.account_id, key.service, feedback.cluster_id, feedback.risk.value,
            feedback.reason, template)
    return StoredFeedback(Feedback(feedback.cluster_id, feedback.risk, feedback.reason,
                                   template), row["updated_at"])


async def delete_feedback(pool: asyncpg.Pool, key: ServiceKey, cluster_id: str) -> bool:
    """Removes the feedback on one cluster; False when there was none."""
    deleted = await pool.fetchval(
        "DELETE FROM log_feedback WHERE account_id = $1 AND service = $2 AND cluster_id = $3 "
        "RETURNING 1", key.account_id, key.service, cluster_id)
    return deleted is not None
