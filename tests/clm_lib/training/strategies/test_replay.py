from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest

from clm_lib.data import lake
from clm_lib.db import session_scope
from clm_lib.db.models import Evaluation, TrainingRun
from clm_lib.errors import TrainingError
from clm_lib.training.context import UpdateContext
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


# --- between updates: the strategy owns its buffer and weights --------------------------------------------------


def _curated(task: str, n: int, start: int = 0) -> pa.Table:
    """Rows shaped like the Delta ``replay``/``curated`` tables."""
    return _table(task, n, start, split="train", source="test", batch_id="b", line=0,
                  ingested_at=datetime.now(UTC), metadata="{}")  # fmt: skip


def _evaluated(db_url: str, tasks: list[str], matrix: list[list[float | None]]) -> None:
    with session_scope(db_url) as s:
        s.add(TrainingRun(id="r2", status="succeeded", base_model="b", config_hash="h"))
        s.flush()
        s.add(Evaluation(training_run_id="r2", tasks=tasks, scores=dict(zip(tasks, matrix[-1], strict=True)),
                         matrix=matrix, average_accuracy=74.0))  # fmt: skip


def _tasks_drawn(replay: Replay, buffer: pa.Table) -> dict[str, int]:
    return _run(replay, [Example((1,), (1,), t, "replay", i) for i, t in zip(buffer["id"].to_pylist(),
                buffer["task"].to_pylist(), strict=True)], steps=40)  # fmt: skip


def test_before_update_reads_the_buffer_and_weighs_tasks_into_its_own_state(cfg, db_url):
    cfg.database.url = db_url
    cfg.training.replay.task_weights = {"thermostats": 0.7}
    settings = cfg.model_dump()
    new = _curated("thermostats", 5)

    first = Replay.from_config(cfg)
    update = UpdateContext(cfg=cfg, run_id="r1", new=new)
    first.before_update(update)  # nothing buffered, nothing evaluated yet: plain replay at the configured weights
    assert (update.data["replay"].num_rows, update.read_versions) == (0, {"replay": None})
    assert first.task_weights == {"thermostats": 0.7} and first.weights_from.startswith("configured")

    buffer = pa.concat_tables([_curated("routers", 6), _curated("billing", 4), _curated("thermostats", 2)])
    version = lake.overwrite(cfg, "replay", buffer)
    _evaluated(db_url, ["routers", "billing", "thermostats"], [[90.0, None, None], [80.0, 90.0, None],
                                                               [60.0, 92.0, 70.0]])  # fmt: skip
    replay = Replay.from_config(cfg)
    update = UpdateContext(cfg=cfg, run_id="r3", new=new)
    replay.before_update(update)
    assert update.read_versions == {"replay": version}
    assert sorted(update.data["replay"]["id"].to_pylist()) == sorted(buffer["id"].to_pylist())
    # routers fell 20 points (2 -> capped at 3), billing gained 2 (0.8); the weight set by hand wins.
    assert replay.task_weights == {"routers": 3.0, "billing": 0.8, "thermostats": 0.7}
    assert "evaluation" in replay.weights_from and "r2" in replay.weights_from
    assert cfg.model_dump() == settings  # the user's config object is left alone

    # It trains exactly as a replay configured with those weights would (the recipe run on its own, the benchmark).
    configured = Replay.from_config(cfg.model_copy(update={"training": cfg.training.model_copy(update={
        "replay": cfg.training.replay.model_copy(update={"task_weights": replay.task_weights})})}))  # fmt: skip
    assert _tasks_drawn(replay, buffer) == _tasks_drawn(configured, buffer)

    cfg.training.replay.dynamic = False
    static = Replay.from_config(cfg)
    static.before_update(UpdateContext(cfg=cfg, run_id="r4", new=new))
    assert static.task_weights == {"thermostats": 0.7} and "dynamic is off" in static.weights_from


def test_after_update_refills_the_buffer_and_returns_what_it_did(cfg, sqlite_url):
    cfg.database.url = sqlite_url
    cfg.training.replay.buffer_size = 8
    read = lake.overwrite(cfg, "replay", _curated("routers", 6))
    new = _curated("thermostats", 10)
    replay = Replay.from_config(cfg)
    update = UpdateContext(cfg=cfg, run_id="r1", new=new)
    with pytest.raises(TrainingError, match="before_update"):
        replay.after_update(update, None)
    replay.before_update(update)

    record = replay.after_update(update, None)  # replay's record does not depend on how training went

    refilled = lake.read_table(cfg, "replay")
    expected = select_buffer(lake.read_table(cfg, "replay", version=read), new, 8, cfg.training.seed, "task_balanced")
    assert refilled["id"].to_pylist() == expected["id"].to_pylist()
    assert record == {
        "buffer_version": read,
        "buffer_version_written": lake.table_version(cfg, "replay"),
        "buffer_tasks_after": {"routers": 4, "thermostats": 4},
        "weights_from": "configured (no evaluation compares two models yet)",
    }
    assert record["buffer_version_written"] > read
