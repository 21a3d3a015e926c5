from __future__ import annotations

import pyarrow as pa
import pytest

from clm_lib.training.data import Batch, Example
from clm_lib.training.loop import train_loop
from clm_lib.training.strategies import Strategy, build_strategies
from clm_lib.training.strategies.replay import Replay, replay_weights, select_buffer
from clm_lib.training.strategy_config import ReplayConfig

from ..helpers import make_context, records


def _table(task: str, n: int, start: int = 0, **extra) -> pa.Table:
    ids = [f"{task}-{i:04d}" for i in range(start, start + n)]
    cols = {"id": ids, "task": [task] * n, "prompt": ids, "response": ["r"] * n}
    cols.update({k: [v] * n for k, v in extra.items()})
    return pa.table(cols)


def _counts(table: pa.Table) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in table.column("task").to_pylist():
        out[t] = out.get(t, 0) + 1
    return out


# --- select_buffer -------------------------------------------------------------------------------------------


def test_buffer_is_capped_and_task_balanced():
    existing = pa.concat_tables([_table("routers", 500), _table("billing", 30)])
    buffer = select_buffer(existing, _table("thermostats", 400), size=300, seed=0)
    # billing has only 30 records: the other tasks share what it leaves.
    assert _counts(buffer) == {"routers": 135, "billing": 30, "thermostats": 135}
    assert buffer.column("task").to_pylist()[0] == "routers"  # grouped, in order of first appearance
    assert len(set(buffer.column("id").to_pylist())) == 300


def test_small_inputs_are_kept_whole_and_duplicates_once():
    new = _table("routers", 5)
    buffer = select_buffer(new, new, size=100, seed=0)
    assert sorted(buffer.column("id").to_pylist()) == sorted(new.column("id").to_pylist())
    assert select_buffer(None, new, size=0, seed=0).num_rows == 0


def test_buffer_is_deterministic_stable_and_a_uniform_sample():
    first = select_buffer(None, _table("routers", 1000), size=200, seed=1)
    assert first.equals(select_buffer(None, _table("routers", 1000), size=200, seed=1))
    # Records are picked from the whole range, not the first rows.
    picked = sorted(int(i.split("-")[1]) for i in first.column("id").to_pylist())
    assert picked[0] < 50 and picked[-1] > 950
    # A new task arrives: routers' share halves, and its survivors all come from the previous buffer.
    second = select_buffer(first, _table("billing", 1000), size=200, seed=1)
    routers = set(second.filter(pa.compute.equal(second["task"], "routers"))["id"].to_pylist())
    assert len(routers) == 100 and routers <= set(first["id"].to_pylist())
    # The same as if the buffer had been chosen from all records at once (bottom-k = reservoir).
    at_once = select_buffer(None, pa.concat_tables([_table("routers", 1000), _table("billing", 1000)]), 200, seed=1)
    assert set(at_once["id"].to_pylist()) == set(second["id"].to_pylist())


def test_buffer_keeps_the_columns_of_both_tables():
    buffer = select_buffer(_table("routers", 3, batch="b1"), _table("billing", 3), size=10, seed=0)
    assert set(buffer.column_names) == {"id", "task", "prompt", "response", "batch"}
    assert buffer.column("batch").null_count == 3


def test_reservoir_policy_samples_all_records_uniformly_not_per_task():
    records_ = pa.concat_tables([_table("routers", 900), _table("billing", 100)])
    balanced = select_buffer(None, records_, size=100, seed=0)
    reservoir = select_buffer(None, records_, size=100, seed=0, policy="reservoir")
    assert _counts(balanced) == {"routers": 50, "billing": 50}
    assert reservoir.num_rows == 100 and 80 <= _counts(reservoir)["routers"] <= 98  # ~90: proportional to supply
    n = _counts(reservoir)
    assert reservoir.column("task").to_pylist() == ["routers"] * n["routers"] + ["billing"] * n["billing"]
    # Bottom-k over all records: the buffer does not depend on how the records were split between updates.
    staged = select_buffer(
        select_buffer(None, _table("routers", 900), 100, 0, "reservoir"), _table("billing", 100), 100, 0, "reservoir"
    )
    assert set(staged["id"].to_pylist()) == set(reservoir["id"].to_pylist())
    with pytest.raises(ValueError, match="policy"):
        select_buffer(None, records_, size=10, seed=0, policy="fifo")


def test_buffer_refuses_tables_without_ids():
    with pytest.raises(ValueError, match="missing id"):
        select_buffer(None, pa.table({"task": ["a"]}), size=1, seed=0)


# --- the strategy --------------------------------------------------------------------------------------------


def _examples(source: str, n: int, task: str = "t") -> list[Example]:
    return [Example((1, 2), (-100, 2), task, source, f"{source}-{task}{i}") for i in range(n)]


class _Ctx:
    def __init__(self, replay: list[Example]):
        self.data = {"replay": replay}
        self.step = 0


@pytest.mark.parametrize(("ratio", "batch_size"), [(0.5, 16), (0.3, 16), (0.25, 10), (0.0, 8)])
def test_replay_injects_buffer_examples_at_the_configured_ratio(ratio, batch_size):
    replay = Replay(ratio, seed=0)
    ctx = _Ctx(_examples("replay", 37))
    replay.before_training(ctx)
    injected = 0
    for step in range(200):
        ctx.step = step
        batch = Batch(_examples("new", batch_size))
        out = replay.before_batch(ctx, batch) or batch
        assert len(out.examples) == batch_size
        per_step = out.count("replay")
        assert abs(per_step - ratio * batch_size) < 1  # never more than rounding away from the ratio
        injected += per_step
    assert injected == round(200 * batch_size * ratio)


def test_every_buffered_example_is_replayed_before_any_repeats():
    replay = Replay(0.5, seed=0)
    ctx = _Ctx(_examples("replay", 12))
    replay.before_training(ctx)
    seen = []
    for step in range(3):
        ctx.step = step
        seen += [
            e.row_id for e in replay.before_batch(ctx, Batch(_examples("new", 8))).examples if e.source == "replay"
        ]
    assert sorted(seen) == sorted(f"replay-t{i}" for i in range(12))


def test_nothing_is_replayed_from_an_empty_buffer():
    replay = Replay(0.5)
    replay.before_training(_Ctx([]))
    assert replay.before_batch(_Ctx([]), Batch(_examples("new", 4))) is None


def test_replay_in_the_training_loop(tiny_cfg, tiny_base):
    tiny_cfg.training.max_steps = 6
    tiny_cfg.training.batch_size = 8
    tiny_cfg.training.replay.mix_ratio = 0.25

    class Spy(Strategy):
        name = "spy"
        counts: list[int] = []

        def before_batch(self, ctx, batch):
            self.counts.append(batch.count("replay"))

    (replay,) = build_strategies(tiny_cfg)
    spy = Spy()
    ctx = make_context(tiny_cfg, tiny_base, records("thermostats", 20), records("routers", 10))
    train_loop(ctx, [replay, spy])
    assert spy.counts == [2] * 6
    assert ctx.seen == {"new": 36, "replay": 12}
    params = replay.params()
    assert params["buffer_tasks"] == {"routers": 10} and params["replayed"] == {"routers": 12}
    assert params["mix_ratio"] == params["effective_mix_ratio"] == params["replay_fraction"] == 0.25


def test_replay_is_built_only_when_enabled(tiny_cfg):
    assert [s.name for s in build_strategies(tiny_cfg)] == ["replay"]  # the only strategy on by default
    tiny_cfg.training.replay.enabled = False
    assert build_strategies(tiny_cfg) == []
    with pytest.raises(ValueError, match="mix_ratio"):
        Replay(1.0)


# --- dynamic, per-task replay ---------------------------------------------------------------------------------


def test_replay_weights_follow_the_last_score_change():
    cfg = ReplayConfig(sensitivity=0.1, min_weight=0.5, max_weight=3.0)
    previous = {"routers": 90.0, "billing": 80.0, "thermostats": 70.0, "ev": 95.0, "payments": None}
    latest = {"routers": 75.0, "billing": 80.0, "thermostats": 78.0, "ev": 20.0, "payments": 60.0, "new": 50.0}
    assert replay_weights(previous, latest, cfg) == {
        "routers": 2.5,  # fell 15 points: replayed 2.5x
        "billing": 1.0,  # held
        "thermostats": 0.5,  # improved 8 points: 1 - 0.8 = 0.2, clipped to min_weight
        "ev": 3.0,  # fell 75 points: clipped to max_weight
    }  # tasks without two scores keep weight 1, i.e. are left out
    with pytest.raises(ValueError, match="min_weight"):
        ReplayConfig(min_weight=2.0, max_weight=1.0)


def _run(replay: Replay, buffer: list[Example], steps: int, batch_size: int = 10) -> dict[str, int]:
    ctx = _Ctx(buffer)
    replay.before_training(ctx)
    counts: dict[str, int] = {}
    for step in range(steps):
        ctx.step = step
        batch = Batch(_examples("new", batch_size, "new"))
        out = replay.before_batch(ctx, batch) or batch
        assert len(out.examples) == batch_size
        for ex in out.examples:
            counts[ex.task] = counts.get(ex.task, 0) + 1
    return counts


def test_without_weights_tasks_are_replayed_in_proportion_to_the_buffer():
    buffer = _examples("replay", 30, "routers") + _examples("replay", 10, "billing")
    counts = _run(Replay(0.4), buffer, steps=50)
    assert counts == {"new": 300, "routers": 150, "billing": 50}


def test_weighted_tasks_get_more_replay_and_raise_the_replay_share():
    buffer = _examples("replay", 20, "routers") + _examples("replay", 20, "billing")
    replay = Replay(0.4, task_weights={"routers": 2.0, "billing": 1.0, "absent": 5.0})
    counts = _run(replay, buffer, steps=50)
    # Mass 20*2 + 20*1 over 40 examples: the buffer share rises from 0.4 to 0.4 * 1.5 = 0.6, split 2:1.
    assert replay.effective_ratio == pytest.approx(0.6)
    assert counts == {"new": 200, "routers": 200, "billing": 100}
    params = replay.params()
    assert params["task_weights"] == {"routers": 2.0, "billing": 1.0}
    assert params["replayed"] == {"routers": 200, "billing": 100} and params["replay_fraction"] == 0.6


def test_weights_never_push_the_replay_share_past_the_cap_and_zero_weight_stops_a_task():
    buffer = _examples("replay", 20, "routers") + _examples("replay", 20, "billing")
    replay = Replay(0.5, task_weights={"routers": 3.0, "billing": 0.0}, max_mix_ratio=0.7)
    counts = _run(replay, buffer, steps=20)
    assert replay.effective_ratio == pytest.approx(0.7)  # 0.5 * 1.5 = 0.75, capped
    assert counts == {"new": 60, "routers": 140}


def test_resumed_replay_draws_what_an_uninterrupted_one_would():
    buffer = _examples("replay", 7, "routers") + _examples("replay", 5, "billing")

    def draws(replay, ctx, steps):
        out = []
        for step in steps:
            ctx.step = step
            out += [e.row_id for e in replay.before_batch(ctx, Batch(_examples("new", 8))).examples]
        return out

    weights = {"billing": 2.0}
    straight = Replay(0.5, seed=3, task_weights=weights)
    ctx = _Ctx(buffer)
    straight.before_training(ctx)
    expected = draws(straight, ctx, range(10))

    first = Replay(0.5, seed=3, task_weights=weights)
    first.before_training(ctx)
    head = draws(first, ctx, range(4))
    resumed = Replay(0.5, seed=3, task_weights=weights)
    resumed.before_training(ctx)
    resumed.load_state_dict(first.state_dict())
    assert head + draws(resumed, ctx, range(4, 10)) == expected
    assert resumed.params() == straight.params()


def test_replay_weights_come_from_the_config(tiny_cfg):
    tiny_cfg.training.replay.task_weights = {"routers": 2.0}
    tiny_cfg.training.replay.max_mix_ratio = 0.6
    (replay,) = build_strategies(tiny_cfg)
    assert (replay.task_weights, replay.max_mix_ratio) == ({"routers": 2.0}, 0.6)
