"""Local stand-in for an Elasticsearch/OpenSearch ``_search`` endpoint (tests only).

Not Elasticsearch: a small aiohttp server implementing the subset of the ``_search`` request
and response shape the delegate's ``elasticsearch`` health source uses — ``bool.filter`` with
``range`` and ``terms``, ``bool.must`` with ``query_string`` (a plain substring match here),
``sort`` on one field, ``size`` and ``search_after`` — over documents the test sets, and it
records every request for assertions. Production points the source at a real cluster.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web


def _field(doc: dict[str, Any], path: str) -> Any:
    if path in doc:
        return doc[path]
    value: Any = doc
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class SearchStandIn:
    """``async with SearchStandIn() as s``: serves ``POST /<index>/_search`` at ``s.url``."""

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.url = ""
        app = web.Application()
        app.router.add_post("/{index}/_search", self._search)
        self._runner = web.AppRunner(app)

    async def __aenter__(self) -> SearchStandIn:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()

    async def _search(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"path": request.path, "body": body})
        query = body.get("query", {}).get("bool", {})
        hits = [d for d in self.documents if all(_matches(d, f) for f in query.get("filter", []))
                and all(_matches(d, m) for m in query.get("must", []))]
        (sort_field, order), = body["sort"][0].items()
        hits.sort(key=lambda d: _field(d, sort_field), reverse=order.get("order") == "desc")
        if "search_after" in body:
            after = body["search_after"][0]
            hits = [d for d in hits if _field(d, sort_field) > after]
        page = hits[: body.get("size", 10)]
        return web.json_response({"took": 1, "timed_out": False, "hits": {
            "total": {"value": len(hits), "relation": "eq"},
            "hits": [{"_index": request.match_info["index"], "_id": str(id(d)), "_source": d,
                      "sort": [_field(d, sort_field)]} for d in page]}})


def _matches(doc: dict[str, Any], clause: dict[str, Any]) -> bool:
    (kind, spec), = clause.items()
    if kind == "range":
        (field, bounds), = spec.items()
        value = _field(doc, field)
        return value is not None and all(
            (op == "gte" and value >= bound) or (op == "gt" and value > bound)
            or (op == "lte" and value <= bound) or (op == "lt" and value < bound)
            for op, bound in bounds.items())
    if kind == "terms":
        (field, values), = spec.items()
        return _field(doc, field) in values
    if kind == "query_string":
        return spec["query"] in str(doc.get("message", ""))
    raise ValueError(f"the stand-in does not implement {kind!r}")
