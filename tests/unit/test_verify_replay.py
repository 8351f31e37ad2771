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
    assert out["explanations"]["metrics"]["analyzer"] == "sax-robust-v5"
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


def _floor_doc(floor):
    """A canary whose latency is +12% of 10 ms on every canary, very clear in the minutes:
    large in percent at high and medium, but 1.2 ms - under a 2/5/10 ms absolute floor."""
    import numpy as np

    rng = np.random.default_rng(7)
    control = {f"p{k}": list(10.0 + rng.normal(0, 0.05, 15)) for k in range(5)}
    test = {f"c{k}": list(11.2 + rng.normal(0, 0.05, 15)) for k in range(5)}
    metric = {"name": "latency_ms", "kind": "latency", "unit": "ms",
              "control": control, "test": test}
    if floor is not None:
        metric["absolute_floor"] = floor
    return {"id": "floor", "mode": "canary", "metrics": [metric]}


def test_replay_honours_the_exported_absolute_floor():
    from vigil_metric_analyzer.domain.replay import replay_metrics

    without = replay_metrics(_floor_doc(None))
    assert without["verdict"]["high"] == "FAIL"
    assert without["verdict"]["medium"] == "FAIL"
    floored = replay_metrics(_floor_doc({"high": 2.0, "medium": 5.0, "low": 10.0}))
    assert floored["verdict"] == {"high": "PASS", "medium": "PASS", "low": "PASS"}
    # The reason names the floor it was held to.
    reasons = [f["reason"] for f in floored["explanations"]["high"] if f["host"] == "c0"]
    assert "2 ms" in reasons[0]
    # One number is the floor at every sensitivity.
    assert replay_metrics(_floor_doc(2.0))["verdict"]["high"] == "PASS"


def test_replay_names_a_malformed_absolute_floor():
    import pytest

    from vigil_metric_analyzer.domain.replay import ReplayError, replay_metrics

    with pytest.raises(ReplayError, match=r"metrics\[0\]\.absolute_floor\.high"):
        replay_metrics(_floor_doc({"high": "2 ms"}))
    with pytest.raises(ReplayError, match=r"metrics\[0\]\.absolute_floor"):
        replay_metrics(_floor_doc([2.0]))
