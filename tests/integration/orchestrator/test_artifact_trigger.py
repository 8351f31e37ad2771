"""Issue 7: an ArtifactPublished event starts the pipelines whose trigger names its service,
with the artifact's version as the trigger's input; a redelivered event starts nothing new."""

from orchestrator_api import dispatched

from vigil.events.v1 import artifact_pb2
from vigil_common import envelope

PIPELINE = """
name: {name}
inputs:
  version: none
triggers:
  - artifact: {{service: checkout, input: version}}
stages:
  - name: ship
    workflow:
      phases:
        - name: p
          steps:
            - name: announce
              type: shell
              script: "echo ${{inputs.version}} ${{artifact.commit}}"
"""


def _published(account: str, service: str, version: str, event_id: str) -> envelope.Envelope:
    headers, value = envelope.encode(artifact_pb2.ArtifactPublished(
        account_id=account, service=service, version=version,
        attributes={"commit": "abc123"}), source="ci", event_id=event_id)
    return envelope.decode(headers, value)


async def test_an_artifact_event_starts_each_triggered_pipeline_once(handlers, pool, account,
                                                                     unique):
    await handlers.apply_pipeline(account, PIPELINE.format(name=f"a-{unique}"))
    await handlers.apply_pipeline(account, PIPELINE.format(name=f"b-{unique}"))
    await handlers.apply_pipeline(account, PIPELINE.format(name=f"c-{unique}").replace(
        "service: checkout", "service: billing"))

    event = _published(account, "checkout", "2.7.1", f"art-{unique}")
    await handlers.on_event(event)
    await handlers.on_event(event)  # redelivered: same ce_id, nothing new

    rows = await pool.fetch("SELECT id, pipeline FROM executions WHERE account_id = $1 "
                            "ORDER BY pipeline", account)
    assert [r["pipeline"] for r in rows] == [f"a-{unique}", f"b-{unique}"]
    for row in rows:
        (task,) = await dispatched(pool, str(row["id"]))
        assert task.spec.shell_script.script == "echo 2.7.1 abc123"


async def test_an_artifact_of_another_account_starts_nothing(handlers, pool, account,
                                                             other_account, unique):
    await handlers.apply_pipeline(account, PIPELINE.format(name=f"a-{unique}"))
    await handlers.on_event(_published(other_account, "checkout", "9.9.9", f"x-{unique}"))
    assert await pool.fetchval("SELECT count(*) FROM executions WHERE account_id = $1",
                               account) == 0
