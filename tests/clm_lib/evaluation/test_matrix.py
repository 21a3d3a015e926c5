import pytest

from clm_lib.evaluation.matrix import build_matrix


def test_sequential_forgetting_gives_negative_bwt():
    m = build_matrix([
        (["a"], {"a": 90.0}),
        (["a", "b"], {"a": 40.0, "b": 95.0}),
        (["a", "b", "c"], {"a": 10.0, "b": 50.0, "c": 99.0}),
    ])
    assert m.tasks == ["a", "b", "c"]
    assert m.rows[0] == [90.0, None, None]
    assert m.average_accuracy == pytest.approx((10 + 50 + 99) / 3)
    assert m.backward_transfer == pytest.approx(((10 - 90) + (50 - 95)) / 2)
    assert m.forgetting() == {"a": 80.0, "b": 45.0}


def test_bwt_undefined_with_one_task_and_zero_without_forgetting():
    assert build_matrix([(["a"], {"a": 80.0})]).backward_transfer is None
    m = build_matrix([(["a"], {"a": 80.0}), (["a", "b"], {"a": 80.0, "b": 70.0})])
    assert m.backward_transfer == 0.0


def test_tasks_learned_together_share_a_row():
    m = build_matrix([(["a", "b"], {"a": 50.0, "b": 60.0}), (["a", "b", "c"], {"a": 55.0, "b": 58.0, "c": 70.0})])
    assert m.learned_at == {"a": 0, "b": 0, "c": 1}
    assert m.backward_transfer == pytest.approx(((55 - 50) + (58 - 60)) / 2)
