from __future__ import annotations

from ganseg.training.early_stopping import EarlyStopping


def test_stops_after_patience_epochs_without_a_large_enough_gain():
    stopper = EarlyStopping(patience=2, min_delta=0.01)
    assert [stopper.update(v) for v in (0.5, 0.6, 0.605, 0.6)] == [False, False, False, True]
    assert stopper.best == 0.6


def test_patience_zero_never_stops_and_state_round_trips():
    stopper = EarlyStopping(patience=0)
    assert not any(stopper.update(0.1) for _ in range(50))
    other = EarlyStopping(patience=0)
    other.load_state_dict(stopper.state_dict())
    assert other.bad_epochs == 49 and other.best == 0.1
