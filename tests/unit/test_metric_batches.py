"""Partial MetricsCollected batches: placing points in the window and the look they give."""

from vigil.events.v1 import verification_pb2 as v
from vigil_metric_analyzer import batches
from vigil_metric_analyzer.domain import ALPHA


def _batch(first, values, partial=True, planned=10):
    msg = v.MetricsCollected(partial=partial, first_interval=first, planned_intervals=planned)
    msg.series.add(metric="m", host="h", group=v.HOST_GROUP_TEST,
                   points=[v.Point(value=x or 0.0, present=x is not None) for x in values])
    return msg


def test_batches_are_placed_by_first_interval_whatever_their_order():
    late, early = _batch(4, [5.0, 6.0]), _batch(0, [1.0, None, 3.0, 4.0])
    window = batches.merge([late, early])
    assert window[v.HOST_GROUP_TEST]["m"]["h"] == [1.0, None, 3.0, 4.0, 5.0, 6.0]


def test_each_partial_batch_is_a_look_at_the_share_of_the_window_covered():
    first, second = _batch(0, [1.0] * 3), _batch(3, [1.0] * 2)
    assert batches.look([first], first).fraction == 0.3
    look = batches.look([first, second], second)
    assert (look.fraction, look.previous) == (0.5, 0.3)
    assert look.alpha > 1e-4  # a statistical look: spends spent(0.5) - spent(0.3)


def test_a_redelivered_batch_adds_no_look_and_unknown_size_waits_for_the_end():
    first = _batch(0, [1.0] * 4)
    assert batches.look([first], _batch(0, [1.0] * 4)).fraction == 0.4
    assert batches.look([first], _batch(0, [1.0] * 4, planned=0)) is None


def test_the_final_batch_is_the_final_look_after_earlier_ones():
    first, last = _batch(0, [1.0] * 4), _batch(4, [1.0] * 6, partial=False)
    look = batches.look([first, last], last)
    assert look.final and look.previous == 0.4
    whole = _batch(0, [1.0] * 10, partial=False)
    assert batches.look([whole], whole).previous == 0.0


def test_looks_past_half_the_window_spend_no_alpha_so_the_final_look_keeps_almost_all():
    # A delegate sending every interval: ten looks at 0.1 .. 1.0.
    sent = [_batch(k, [1.0], partial=k < 9) for k in range(10)]
    looks = [batches.look(sent[:k + 1], sent[k]) for k in range(10)]
    assert [type(x).__name__ for x in looks[:5]] == ["Look"] * 5
    assert all(isinstance(x, batches.ThresholdLook) for x in looks[5:9])
    assert all(x.alpha == batches.NEGLIGIBLE_ALPHA for x in looks[5:9])
    final = looks[9]
    assert final.final and final.previous == 0.5
    assert sum(x.alpha for x in looks) <= ALPHA + 1e-9  # the union bound still holds
    assert final.alpha > 0.97 * ALPHA
