"""Runs the continual-learning benchmark's arms through the library's own recipe and scorer.

Every training run is ``clm_lib.training.recipe.train_update``; every score is
``clm_lib.evaluation.metrics.score_tasks`` on held-out tickets. Identical runs (same training settings, data
and parent) are trained once and shared between arms: the first update of ``sequential``, ``joint`` and the
first task's single-task adapter are the same run.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
from continual_metrics import Cost
from pydantic import ValidationError

from clm_lib.config import ClmConfig
from clm_lib.data.records import record_id
from clm_lib.demo.stream import generate_task
from clm_lib.errors import ConfigError
from clm_lib.evaluation.metrics import score_tasks
from clm_lib.modeling.load import load_model
from clm_lib.training.context import TrainResult
from clm_lib.training.recipe import train_update
from clm_lib.training.strategies.replay import replay_weights, select_buffer


@dataclass(frozen=True)
class Stream:
    tasks: list[str]
    train: dict[str, pa.Table]
    eval: dict[str, pa.Table]
    eval_wording: dict[str, pa.Table] = field(default_factory=dict)
    """Held-out tickets whose symptoms are said in words training never uses (the demo's stream only); empty: none."""


def records_table(records: list[dict[str, str]]) -> pa.Table:
    """Records as the runner's table, each with an ``id`` from its content (``record_id``): runs are keyed on them."""
    rows = [{"id": record_id(r["task"], r["prompt"], r["response"]), **r} for r in records]
    return pa.Table.from_pylist(rows)


def make_stream(tasks: list[str], n_train: int, n_eval: int, seed: int) -> Stream:
    """Training tickets as the demo draws them; held-out ones with names and small talk training never shows, and
    as many again whose symptoms are also said in new words (``eval_wording``)."""
    return Stream(
        tasks=tasks,
        train={t: records_table(generate_task(t, n_train, seed)) for t in tasks},
        eval={t: records_table(generate_task(t, n_eval, seed, heldout=True)) for t in tasks},
        eval_wording={t: records_table(generate_task(t, n_eval, seed, new_wording=True)) for t in tasks},
    )


def apply_overrides(cfg: ClmConfig, overrides: dict[str, Any], *, skip_missing: bool = False) -> ClmConfig:
    """A copy of ``cfg`` with dotted-path overrides (``{"training.replay.enabled": False}``), validated.

    ``skip_missing`` leaves out overrides whose field does not exist; otherwise such a field is a
    :class:`ConfigError` (the config forbids unknown fields).
    """
    raw = cfg.model_dump(mode="json")
    for dotted, value in overrides.items():
        *parents, leaf = dotted.split(".")
        node = raw
        for part in parents:
            if not isinstance(node.get(part), dict):
                if skip_missing:
                    break
                raise ConfigError(f"{dotted}: no section {part!r}")
            node = node[part]
        else:
            if skip_missing and leaf not in node:
                continue
            node[leaf] = value
    try:
        return ClmConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())) from None


@dataclass
class Update:
    """One training run of an arm and what it cost."""

    task: str
    label: str
    cost: Cost
    steps: int
    final_loss: float | None
    replay_fraction: float
    replay_rows: int
    strategies: dict[str, Any]
    eval_seconds: float = 0.0
    load_avg: float = 0.0
    """1-minute load average when the run ended (2 cores: above 2 means it shared them)."""
    shared_with: str | None = None
    """Label of the identical run this one reuses, if any."""

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(d.pop("cost"))
        return d


@dataclass
class ArmRun:
    rows: list[dict[str, float]] = field(default_factory=list)
    """Scores after each update, task -> accuracy (single-task: one row per task, that task only)."""
    updates: list[Update] = field(default_factory=list)
    wording: dict[str, float] = field(default_factory=dict)
    """The final model's accuracy per task on held-out wordings (single-task: each task's own adapter)."""


class Runner:
    def __init__(self, cfg: ClmConfig, stream: Stream, work: Path, strategies_off: dict[str, Any]) -> None:
        self.base = cfg
        self.off = apply_overrides(cfg, strategies_off, skip_missing=True)
        self.stream = stream
        self.work = work
        self._done: dict[str, tuple[TrainResult, Update]] = {}

    def arm_config(self, overrides: dict[str, Any]) -> ClmConfig:
        return apply_overrides(self.off, overrides)

    # --- one run ------------------------------------------------------------------------------------------------

    def _train(
        self,
        cfg: ClmConfig,
        label: str,
        task: str,
        new: pa.Table,
        replay: pa.Table | None,
        parent: tuple[str, Path] | None,
    ) -> tuple[str, TrainResult, Update]:
        key = hashlib.sha256(
            json.dumps(
                [
                    cfg.training.model_dump(mode="json"),
                    cfg.model.model_dump(mode="json"),
                    sorted(new.column("id").to_pylist()),
                    sorted(replay.column("id").to_pylist()) if replay is not None else [],
                    parent[0] if parent else None,
                ],
                sort_keys=True,
            ).encode()
        ).hexdigest()[:16]
        if key in self._done:
            result, first = self._done[key]
            return key, result, Update(**{**first.__dict__, "label": label, "shared_with": first.label})
        cpu = time.process_time()
        result = train_update(
            cfg,
            new_data=new,
            replay_data=replay,
            parent_adapter_dir=parent[1] if parent else None,
            output_dir=self.work / key,
            run_id=label,
        )
        update = Update(
            task=task,
            label=label,
            cost=Cost(tokens=result.tokens_seen, seconds=result.wall_seconds, cpu_seconds=time.process_time() - cpu),
            steps=result.steps,
            final_loss=result.final_loss,
            replay_fraction=result.replay_fraction,
            replay_rows=result.replay_rows,
            strategies=result.strategies,
            load_avg=os.getloadavg()[0],
        )
        self._done[key] = (result, update)
        return key, result, update

    def _score(self, cfg: ClmConfig, adapter_dir: Path, tasks: list[str], update: Update) -> dict[str, float]:
        start = time.monotonic()
        scores = self._accuracy(cfg, adapter_dir, [self.stream.eval[t] for t in tasks])
        update.eval_seconds = round(time.monotonic() - start, 2)
        return scores

    def _score_wording(self, cfg: ClmConfig, adapter_dir: Path, tasks: list[str]) -> dict[str, float]:
        """Accuracy on the held-out wordings of ``tasks``; empty when the stream has none (a user's)."""
        if not self.stream.eval_wording:
            return {}
        return self._accuracy(cfg, adapter_dir, [self.stream.eval_wording[t] for t in tasks])

    def _accuracy(self, cfg: ClmConfig, adapter_dir: Path, tables: list[pa.Table]) -> dict[str, float]:
        model, tokenizer = load_model(cfg.base_model_dir, adapter_dir)
        scores = score_tasks(
            model,
            tokenizer,
            pa.concat_tables(tables),
            max_examples_per_task=cfg.evaluation.max_examples_per_task,
            batch_size=cfg.evaluation.batch_size,
            max_length=cfg.model.max_length,
        )
        return {t: s.accuracy for t, s in scores.items()}

    def _log(self, update: Update, row: dict[str, float]) -> None:
        shared = f" (= {update.shared_with})" if update.shared_with else ""
        print(
            f"  {update.label:<28} {update.cost.seconds:6.1f} s  cpu {update.cost.cpu_seconds:6.1f} s  "
            f"{update.cost.tokens:>8} tok  loss {update.final_loss or 0:.3f}  load {update.load_avg:.1f}{shared} | "
            + " ".join(f"{t}={v:.1f}" for t, v in row.items()),
            flush=True,
        )

    def _log_wording(self, name: str, run: ArmRun) -> None:
        if run.wording:
            print(
                f"  {name + ' held-out wordings':<28} " + " ".join(f"{t}={v:.1f}" for t, v in run.wording.items()),
                flush=True,
            )

    # --- arms ---------------------------------------------------------------------------------------------------

    def single_task(self, tasks: list[str] | None = None, base: Path | None = None, name: str = "single") -> ArmRun:
        """A fresh adapter per task (of ``tasks``, default all), trained on that task alone, strategies off; on the
        base in ``base`` when given (a domain-adapted one)."""
        out = ArmRun()
        cfg = self.off if base is None else apply_overrides(self.off, {"model.base_path": str(base)})
        for task in tasks or self.stream.tasks:
            _key, result, update = self._train(cfg, f"{name}/{task}", task, self.stream.train[task], None, None)
            row = self._score(cfg, result.adapter_dir, [task], update)
            out.wording.update(self._score_wording(cfg, result.adapter_dir, [task]))
            out.rows.append(row)
            out.updates.append(update)
            self._log(update, row)
        self._log_wording(name, out)
        return out

    def joint(self) -> ArmRun:
        """At update i, a fresh adapter on all training data of tasks 0..i, ``(i+1) x max_steps`` steps."""
        out = ArmRun()
        steps = self.off.training.max_steps
        for i, task in enumerate(self.stream.tasks):
            cfg = apply_overrides(self.off, {"training.max_steps": steps * (i + 1)})
            seen = self.stream.tasks[: i + 1]
            data = pa.concat_tables([self.stream.train[t] for t in seen])
            _key, result, update = self._train(cfg, f"joint/{i}-{task}", task, data, None, None)
            row = self._score(cfg, result.adapter_dir, seen, update)
            out.rows.append(row)
            out.updates.append(update)
            self._log(update, row)
        out.wording = self._score_wording(cfg, result.adapter_dir, self.stream.tasks)
        self._log_wording("joint", out)
        return out

    def continual(self, cfg: ClmConfig, name: str, switch_base: tuple[int, Path] | None = None) -> ArmRun:
        """One update per task, each continuing the previous adapter, with the arm's strategies.

        With dynamic replay, each update's task weights come from the last two rows of R, as ``run_update`` takes
        them from the last evaluation. ``switch_base=(i, dir)``: from update ``i`` on, train and score on the base in
        ``dir`` (a domain-adapted one), the adapter continuing across the switch.
        """
        out = ArmRun()
        buffer: pa.Table | None = None
        parent: tuple[str, Path] | None = None
        replay = cfg.training.replay
        for i, task in enumerate(self.stream.tasks):
            new = self.stream.train[task]
            if switch_base is not None and i == switch_base[0]:
                cfg = apply_overrides(cfg, {"model.base_path": str(switch_base[1])})
            update_cfg = cfg
            if replay.enabled and replay.dynamic and i >= 2:
                weights = {**replay_weights(out.rows[-2], out.rows[-1], replay), **replay.task_weights}
                update_cfg = apply_overrides(cfg, {"training.replay.task_weights": weights})
            key, result, update = self._train(update_cfg, f"{name}/{i}-{task}", task, new, buffer, parent)
            row = self._score(cfg, result.adapter_dir, self.stream.tasks[: i + 1], update)
            out.rows.append(row)
            out.updates.append(update)
            self._log(update, row)
            if replay.enabled:
                buffer = select_buffer(buffer, new, replay.buffer_size, cfg.training.seed, replay.policy)
            parent = (key, result.adapter_dir)
        if parent is not None:
            out.wording = self._score_wording(cfg, parent[1], self.stream.tasks)
            self._log_wording(name, out)
        return out
