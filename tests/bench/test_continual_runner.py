"""The benchmark's plumbing: arms as config overrides, the held-out stream, and its command line."""

from __future__ import annotations

import pytest
from continual_runner import apply_overrides, make_stream

from clm_lib.errors import ConfigError


def test_overrides_set_dotted_fields_and_validate(cfg):
    out = apply_overrides(cfg, {"training.replay.enabled": False, "training.max_steps": 7})
    assert out.training.replay.enabled is False
    assert out.training.max_steps == 7
    assert cfg.training.max_steps != 7  # the original is left alone
    with pytest.raises(ConfigError, match="max_steps"):
        apply_overrides(cfg, {"training.max_steps": 0})


def test_an_arm_naming_a_field_the_config_lacks_is_an_error_unless_skipped(cfg):
    with pytest.raises(ConfigError, match="no_such_strategy"):
        apply_overrides(cfg, {"training.no_such_strategy.enabled": True})
    with pytest.raises(ConfigError, match="enabled_typo"):
        apply_overrides(cfg, {"training.replay.enabled_typo": True})
    same = apply_overrides(cfg, {"training.no_such_strategy.enabled": True, "training.replay.x": 1}, skip_missing=True)
    assert same == cfg


def test_stream_holds_out_tickets_training_never_shows():
    stream = make_stream(["routers", "billing"], n_train=120, n_eval=30, seed=0)
    for task in stream.tasks:
        train, held = stream.train[task], stream.eval[task]
        assert (train.num_rows, held.num_rows) == (120, 30)
        assert set(train.column("task").to_pylist()) == set(held.column("task").to_pylist()) == {task}
        assert not set(train.column("id").to_pylist()) & set(held.column("id").to_pylist())
        assert not set(train.column("prompt").to_pylist()) & set(held.column("prompt").to_pylist())


def test_command_line_refuses_unknown_arms_and_bad_overrides(capsys):
    import continual

    for argv in (["--arms", "sequential,nope"], ["--arm", "x={not json"], ["--arm", "replay={}"], ["--arm", "y=[1]"]):
        with pytest.raises(SystemExit) as exc:
            continual.main(argv)
        assert exc.value.code == 2
    assert "unknown arm(s) nope" in capsys.readouterr().err
