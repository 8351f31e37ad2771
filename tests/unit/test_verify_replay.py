"""`vigil verify replay`: the documented example in, the documented output shape out."""

import json
from pathlib import Path

from vigil_cli import main as cli

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "verify-replay-canary.json"


def test_replay_of_the_documented_example_fails_the_slower_canary_at_high_and_medium(capsys):
    assert cli.main(["verify", "replay", str(EXAMPLE)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"id", "verdict", "metrics", "verdict_metrics", "verdict_logs", "logs",
                        "explanations"}
    # +32% latency, but two primaries 5 ms apart: under LOW's 5 noise SDs.
    assert out["verdict_metrics"] == {"high": "FAIL", "medium": "FAIL", "low": "PASS"}
    assert out["metrics"]["medium"] == {"p95_latency_ms": "regression",
                                     "error_rate": "no-regression",
                                     "requests_per_minute": "no-regression"}
    assert out["explanations"]["metrics"]["analyzer"] == "sax-robust-v4"
    assert set(out["logs"]) == {"line_clusters", "cluster_labels"}


def test_replay_at_one_sensitivity_and_a_bad_field_is_named(capsys, tmp_path):
    assert cli.main(["verify", "replay", str(EXAMPLE), "--sensitivity", "high"]) == 0
    assert list(json.loads(capsys.readouterr().out)["verdict"]) == ["high"]
    doc = json.loads(EXAMPLE.read_text())
    doc["metrics"][0]["kind"] = "latencyy"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert cli.main(["verify", "replay", str(bad)]) == 2
    assert "metrics[0].kind" in capsys.readouterr().err
