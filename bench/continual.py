"""The forgetting benchmark: continual-learning strategies on the demo's five-task stream, against both bounds.

Five product lines of support tickets arrive one after another (``clm_lib.demo.stream``). Every arm trains one
update per task with ``clm_lib.training.recipe.train_update`` (the recipe the DAG runs) and, after each update,
scores every task seen so far on held-out tickets, which gives the accuracy matrix R. Arms:

- ``sequential``: one adapter fine-tuned task after task, every strategy off (the lower bound);
- one arm per strategy alone (``replay``, ``ewc``, ``distillation``, ``freeze``, ``per_task_adapters``);
- ``recommended``: the combination proposed as clm's default;
- ``joint``: at every update, a fresh adapter retrained from scratch on all the data seen so far, with as many
  steps per task as an update gives its new task (the upper bound, and the reference for cost);
- ``single_task``: a fresh adapter per task, trained on that task alone (the reference for R[i][i]).

Held-out tickets are drawn with ``generate_task(..., heldout=True)``: product names, small talk, customer names and
cities that training tickets never use, so a model must generalise, not recall, to score. Each final model is also
scored on as many tickets whose symptoms are said in words no training ticket or warm-up text uses
(``generate_task(..., new_wording=True)``): each arm's ``heldout_wording``, held-out names next to held-out wordings.

An arm is a dict of config overrides on top of ``STRATEGIES_OFF``; an arm naming a field this checkout's config
lacks is reported as pending, not run. Seeds draw the stream and the training randomness; results are means over
seeds. ``--stream DIR`` runs the same arms on a user's tasks instead (``continual_stream``): files fixed, seeds
then draw training randomness and any subsample only. Writes ``<name>.json`` (everything, per seed too),
``<name>.md`` (tables) and ``<name>.png`` (heatmaps of R) to ``--out-dir``::

    clm bench continual            # full: every arm, 3 seeds, the shipped config; what docs/continual.md quotes
    clm bench continual --quick    # the bounds and the recommended arm, 1 seed: under 10 minutes on 2 cores
    clm bench continual --smoke    # 3 tasks, no single-task references: the CI test (tests/bench)
    clm bench continual --quick --arm 'mine={"training.replay.enabled": true, "training.replay.mix_ratio": 0.3}'
    clm bench continual --quick --stream bench/streams/pystdlib   # your own tasks (layout: continual_stream.py)
    clm bench continual --quick --arms recommended --stream bench/streams/pystdlib_then_unix \\
        --domain-text bench/streams/pystdlib_then_unix_text --domain-from 3   # does domain adaptation help?

``--domain-text DIR`` adds the arm ``recommended_domain``: the recommended combination, whose base is adapted to
the later domain (``clm_lib.training.domain``, ``training.domain`` settings) on that folder's raw text when the
stream reaches task ``--domain-from`` (default 1: before the first task); the adapter continues across the switch.
The adaptation's own cost is reported apart (it is paid once per domain, not per update), with the base-only
before/after scores of ``clm_lib.evaluation.domain_comparison`` on the held-out examples.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import continual_metrics as metrics
import continual_report as report
from continual_runner import ArmRun, Runner, Stream, apply_overrides, make_stream
from continual_stream import StreamError, load_stream

from clm_lib.config import load_config
from clm_lib.errors import ClmError, ConfigError
from clm_lib.modeling.build import ensure_base_model

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Arm:
    name: str
    overrides: dict[str, Any]
    about: str


STRATEGIES_OFF: dict[str, Any] = {
    "training.replay.enabled": False,
    "training.ewc.enabled": False,
    "training.distillation.enabled": False,
    "training.freeze.embeddings": False,
    "training.freeze.lowest_blocks": 0,
    "training.freeze.patterns": [],
    "training.adapters.mode": "shared",
    "training.adapters.orthogonality": 0.0,
    "training.deepspeed": None,
}
"""Every strategy switched off, plain PyTorch (a field this checkout lacks is skipped: that strategy is not here)."""

_EWC = {"training.ewc.enabled": True, "training.ewc.strength": 0.003}
"""EWC as the benchmark recommends it. The penalty sums over every LoRA parameter of a mean-normalized Fisher, so
useful strengths are small: single-seed exploration with replay found 0.01 too rigid for new tasks, 0.003 best."""

ARMS: tuple[Arm, ...] = (
    Arm("sequential", {}, "one adapter fine-tuned task after task, no strategy (lower bound)"),
    Arm("replay", {"training.replay.enabled": True}, "task-balanced replay buffer, dynamic task weights"),
    Arm("ewc", {**_EWC}, "online EWC penalty (strength as in the recommended combination)"),
    Arm("distillation", {"training.distillation.enabled": True}, "distillation from the previous model"),
    Arm("freeze", {"training.freeze.lowest_blocks": 1}, "lowest transformer block frozen"),
    Arm("per_task_adapters", {"training.adapters.mode": "per_task"}, "one adapter per task, learned router"),
    Arm("recommended", {"training.replay.enabled": True, **_EWC}, "replay + EWC: the default in include/clm.yaml"),
)
RECOMMENDED = "recommended"

TARGETS = {"sequential_bwt": -30.0, "gap_closure": 0.95, "bwt": -2.0, "learning": 0.9, "cost": 0.25}
"""Issue 3's targets: sequential BWT <= -30; for the recommended arm gap closure >= 0.95, BWT >= -2, every
R[i][i] >= 0.9 x single-task score, last update <= 0.25 x retraining from scratch on all data so far."""


@dataclass(frozen=True)
class Scale:
    arms: tuple[str, ...]
    tasks: int = 5
    n_train: int = 680
    """Training tickets per task (what ingestion keeps of a demo drop of 800)."""
    n_eval: int = 200
    """Held-out tickets per task."""
    single_task: bool = True
    """Train the single-task references (needed for the R[i][i] target)."""
    seeds: tuple[int, ...] = (0,)
    """Each seed draws its own stream and training randomness; results are averaged over seeds."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Config overrides on top of ``--config``."""
    bounds: dict[str, float] = field(default_factory=dict)
    """Bounds the CI test holds this scale's results to (documented in docs/continual.md); empty: none."""


_ALL = tuple(a.name for a in ARMS)
SCALES: dict[str, Scale] = {
    "full": Scale(arms=_ALL, seeds=(0, 1, 2)),
    # The same runs as full for its arms (same config, data and seed), so its numbers are full's numbers.
    "quick": Scale(arms=("sequential", RECOMMENDED)),
    "smoke": Scale(
        arms=("sequential", RECOMMENDED),
        tasks=3,
        n_eval=100,
        single_task=False,
        bounds={"sequential_bwt": -30.0, "bwt": -10.0, "gap_closure": 0.8},
    ),
}


def _mean_rows(runs: list[ArmRun]) -> list[dict[str, float]]:
    """Element-wise mean of R over seeds (every seed scores the same tasks after the same update)."""
    return [
        {t: statistics.fmean(r.rows[i][t] for r in runs) for t in runs[0].rows[i]} for i in range(len(runs[0].rows))
    ]


def _summed_costs(runs: list[ArmRun]) -> list[metrics.Cost]:
    return [
        metrics.Cost(*(sum(getattr(r.updates[i].cost, unit) for r in runs) for unit in metrics.UNITS))
        for i in range(len(runs[0].updates))
    ]


def _spread(values: list[float | None]) -> dict[str, Any]:
    known = [v for v in values if v is not None]
    return {"per_seed": values, "sd": statistics.stdev(known) if len(known) > 1 else None}


def run(
    scale_name: str,
    config: str | None,
    arms: list[Arm],
    seeds: list[int],
    home: Path,
    stream_dir: Path | None = None,
    n_train: int | None = None,
    n_eval: int | None = None,
    domain_text: Path | None = None,
    domain_from: int = 1,
) -> dict[str, Any]:
    """``stream_dir``: a user's stream (``continual_stream``) instead of the demo's tickets; ``n_train``/``n_eval``:
    examples per task instead of the scale's (for a user's stream: caps, as seeded subsamples; default all)."""
    scale = SCALES[scale_name]
    environ = {**os.environ, "CLM_HOME": str(home)}
    cfg = load_config(config, environ=environ)
    if stream_dir is None:
        demo_tasks = list(cfg.data.tasks)[: scale.tasks]
        n_train, n_eval = n_train or scale.n_train, n_eval or scale.n_eval

        def stream_for(seed: int) -> tuple[Stream, dict[str, Any]]:
            return make_stream(demo_tasks, n_train, n_eval, seed), {}
    else:

        def stream_for(seed: int) -> tuple[Stream, dict[str, Any]]:
            return load_stream(stream_dir, tasks=scale.tasks, n_train=n_train, n_eval=n_eval, seed=seed)

    # Read (and so checked) before the base model is built: a broken stream fails in seconds, not minutes.
    first_stream, stream_info = stream_for(seeds[0])
    tasks = first_stream.tasks
    if domain_text is not None:
        from clm_lib.training.domain_text import read_text_folder

        read_text_folder(domain_text, max_file_bytes=cfg.training.domain.max_file_bytes)  # checked before building
        if not 1 <= domain_from <= len(tasks):
            raise ClmError(f"--domain-from {domain_from}: the stream has tasks 1 to {len(tasks)}")
    # The config must know a user's tasks, as ingestion would need them in data.tasks.
    base_cfg = apply_overrides(cfg, {**scale.overrides, **({"data.tasks": tasks} if stream_dir else {})})
    start = time.monotonic()
    ensure_base_model(base_cfg)
    build_s = time.monotonic() - start
    print(f"base model built in {build_s:.1f} s", flush=True)
    out: dict[str, Any] = {
        "scale": scale_name,
        "config": config or "include/clm.yaml",
        "seeds": seeds,
        "tasks": tasks,
        "train_rows": stream_info.get("train_rows", n_train),
        "eval_rows": stream_info.get("eval_rows", n_eval),
        "stream": stream_info or None,
        "scale_overrides": scale.overrides,
        "strategies_off": STRATEGIES_OFF,
        "training": base_cfg.training.model_dump(mode="json"),
        "architecture": base_cfg.model.architecture,
        "base_build_s": round(build_s, 1),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_before": os.getloadavg()},
        "targets": TARGETS,
        # The scale's bounds were measured on the demo's tickets: they say nothing about another stream.
        "bounds": {} if stream_dir else scale.bounds,
        "recommended": next(a for a in ARMS if a.name == RECOMMENDED).overrides,
        "arms": {},
        "pending": {},
    }
    off = apply_overrides(base_cfg, STRATEGIES_OFF, skip_missing=True)
    domain = _adapt_domain(base_cfg, first_stream, domain_text, domain_from, home) if domain_text else None
    if domain is not None:
        out["domain"] = domain["record"]
        arms = [*arms, Arm(DOMAIN_ARM, {}, domain["about"])]
    runnable = []
    for arm in arms:
        if arm.name == DOMAIN_ARM:
            continue
        try:
            apply_overrides(off, arm.overrides)
            runnable.append(arm)
        except ConfigError as exc:
            out["pending"][arm.name] = f"not in this checkout's config: {exc}"
            print(f"{arm.name}: pending ({exc})", flush=True)

    singles: list[ArmRun] = []
    domain_singles: list[ArmRun] = []
    runs: dict[str, list[ArmRun]] = {a.name: [] for a in runnable} | {"joint": []}
    for seed in seeds:
        # The seed draws the stream (a user's: only its subsamples) and drives training (LoRA initialisation, batch
        # order); the base model stays.
        runner = Runner(
            apply_overrides(base_cfg, {"training.seed": seed}),
            first_stream if seed == seeds[0] else stream_for(seed)[0],
            home / f"seed-{seed}",
            STRATEGIES_OFF,
        )
        if scale.single_task:
            print(f"\n== seed {seed}: single_task", flush=True)
            singles.append(runner.single_task())
        print(f"\n== seed {seed}: joint (retraining from scratch on everything seen so far)", flush=True)
        runs["joint"].append(runner.joint())
        for arm in runnable:
            print(f"\n== seed {seed}: {arm.name}: {arm.about}", flush=True)
            runs[arm.name].append(runner.continual(runner.arm_config(arm.overrides), arm.name))
        if domain is not None and scale.single_task:
            print(f"\n== seed {seed}: single_task on the adapted base (later tasks)", flush=True)
            domain_singles.append(runner.single_task(domain["record"]["later_tasks"], domain["base"], "single_domain"))
        if domain is not None:
            print(f"\n== seed {seed}: {DOMAIN_ARM}: {domain['about']}", flush=True)
            recommended = next(a for a in ARMS if a.name == RECOMMENDED).overrides
            switch = (domain_from - 1, domain["base"])
            runs[DOMAIN_ARM] = runs.get(DOMAIN_ARM, [])
            runs[DOMAIN_ARM].append(runner.continual(runner.arm_config(recommended), DOMAIN_ARM, switch_base=switch))

    single_scores = {t: statistics.fmean(s.rows[i][t] for s in singles) for i, t in enumerate(tasks)} if singles else {}
    out["single_task"] = {
        "scores": single_scores,
        "updates": [[u.as_dict() for u in s.updates] for s in singles],
    }
    if singles and singles[0].wording:
        out["single_task"]["heldout_wording"] = metrics.wording_summary(single_scores, [s.wording for s in singles])
    if domain_singles:
        later = out["domain"]["later_tasks"]
        out["domain"]["single_task_on_adapted_base"] = {
            t: statistics.fmean(s.rows[i][t] for s in domain_singles) for i, t in enumerate(later)
        }
    joint_costs = _summed_costs(runs["joint"])
    for name, seed_runs in runs.items():
        summary = metrics.summarize(metrics.matrix_from_rows(tasks, _mean_rows(seed_runs)), single_scores)
        per_seed = [metrics.matrix_from_rows(tasks, r.rows) for r in seed_runs]
        arm = next((a for a in arms if a.name == name), None)
        summary["about"] = arm.about if arm else "retraining from scratch on all data so far (upper bound)"
        summary["overrides"] = arm.overrides if arm else {}
        summary["cost"] = metrics.cost_ratios(_summed_costs(seed_runs), joint_costs)
        summary["spread"] = {
            "AA": _spread([m.average_accuracy for m in per_seed]),
            "BWT": _spread([m.backward_transfer for m in per_seed]),
        }
        summary["updates"] = [[u.as_dict() for u in r.updates] for r in seed_runs]
        if seed_runs[0].wording:
            # The final model on held-out names (R's last row) and on held-out wordings of the same symptoms.
            final = dict(zip(tasks, summary["R"][-1], strict=True))
            summary["heldout_wording"] = metrics.wording_summary(final, [r.wording for r in seed_runs])
        out["arms"][name] = summary
    if "sequential" in out["arms"]:
        seq, joint = out["arms"]["sequential"], out["arms"]["joint"]
        for summary in out["arms"].values():
            summary["gap_closure"] = metrics.gap_closure(summary["AA"], seq["AA"], joint["AA"])
            summary["spread"]["gap_closure"] = _spread(
                [
                    metrics.gap_closure(a, s, j)
                    for a, s, j in zip(
                        summary["spread"]["AA"]["per_seed"],
                        seq["spread"]["AA"]["per_seed"],
                        joint["spread"]["AA"]["per_seed"],
                        strict=True,
                    )
                ]
            )
    # Without single-task references the R[i][i] target cannot be checked: leave it out rather than fail it.
    targets = {k: v for k, v in TARGETS.items() if single_scores or k != "learning"}
    out["target_checks"] = [t.as_dict() for t in metrics.targets(out["arms"], RECOMMENDED, targets)]
    if out["bounds"]:
        out["bound_checks"] = [t.as_dict() for t in metrics.targets(out["arms"], RECOMMENDED, out["bounds"])]
    out["machine"]["load_after"] = os.getloadavg()
    return out


DOMAIN_ARM = "recommended_domain"


def _adapt_domain(cfg, stream: Stream, text: Path, first: int, home: Path) -> dict[str, Any]:
    """Adapt the base on ``text``, score both bases alone on the held-out examples (earlier tasks: ``original``,
    from task ``first`` on: ``new``); the adapted base's folder and what to record."""
    import pyarrow as pa

    from clm_lib.evaluation.domain_comparison import compare_bases
    from clm_lib.training.domain import adapt_domain

    base = cfg.base_model_dir
    print(f"\n== domain adaptation on {text}", flush=True)
    result = adapt_domain(cfg, text, home / "domain-base", reason="clm bench continual --domain-text")
    earlier, later = stream.tasks[: first - 1], stream.tasks[first - 1 :]

    def table(tasks: list[str]):
        return pa.concat_tables([stream.eval[t] for t in tasks]) if tasks else None

    comparison = compare_bases(
        base,
        result.out_dir,
        original=table(earlier),
        new=table(later),
        max_examples_per_task=cfg.evaluation.max_examples_per_task,
        batch_size=cfg.evaluation.batch_size,
        max_length=cfg.model.max_length,
    )
    print(
        f"  {result.steps} steps in {result.wall_seconds:.0f} s; held-out text loss "
        f"{result.heldout_loss_before} -> {result.heldout_loss_after}",
        flush=True,
    )
    record = {
        "text": str(Path(text).resolve()),
        "from_task": first,
        "earlier_tasks": earlier,
        "later_tasks": later,
        "steps": result.steps,
        "tokens_seen": result.tokens_seen,
        "train_chunks": result.train_chunks,
        "heldout_chunks": result.heldout_chunks,
        "heldout_text_loss": {"before": result.heldout_loss_before, "after": result.heldout_loss_after},
        "wall_seconds": result.wall_seconds,
        "settings": cfg.training.domain.model_dump(mode="json"),
        "base_only_comparison": comparison.to_dict(),
    }
    when = "before the first task" if first == 1 else f"when task {first} ({stream.tasks[first - 1]}) arrives"
    about = f"recommended, on a base adapted to {Path(text).name} {when}"
    return {"base": result.out_dir, "record": record, "about": about}


def domain_markdown(result: dict[str, Any]) -> str:
    """The domain-adaptation section of the report: what adapting the base did, recommended with and without."""
    d = result.get("domain")
    if not d or DOMAIN_ARM not in result["arms"] or RECOMMENDED not in result["arms"]:
        return ""
    tasks = result["tasks"]
    plain, adapted = result["arms"][RECOMMENDED], result["arms"][DOMAIN_ARM]
    loss = d["heldout_text_loss"]
    lines = [
        "",
        "## Domain adaptation",
        "",
        f"Base adapted on {d['text']} ({d['steps']} steps, {d['tokens_seen']} tokens, {d['wall_seconds']:.0f} s, "
        f"not counted in the arm's cost) when task {d['from_task']} arrives; held-out text loss "
        f"{loss['before']} -> {loss['after']}.",
        "",
        "| task | domain | base alone: loss before -> after | R[i][i] recommended | R[i][i] + domain "
        "| final recommended | final + domain |",
        "|---|---|---|---|---|---|---|",
    ]
    base_only = {t["task"]: t for t in d["base_only_comparison"]["tasks"]}
    for i, task in enumerate(tasks):
        b = base_only.get(task, {})
        group = "later" if task in d["later_tasks"] else "earlier"
        nan = float("nan")
        cells = [plain["R"][i][i], adapted["R"][i][i], plain["R"][-1][i], adapted["R"][-1][i]]
        lines.append(
            f"| {task} | {group} | {b.get('loss_before', nan):.3f} -> {b.get('loss_after', nan):.3f} | "
            + " | ".join(f"{v:.1f}" for v in cells)
            + " |"
        )
    lines += [
        "",
        f"AA {plain['AA']:.1f} -> {adapted['AA']:.1f}; BWT {_fmt(plain['BWT'])} -> {_fmt(adapted['BWT'])}.",
    ]
    singles, adapted_singles = result["single_task"]["scores"], d.get("single_task_on_adapted_base", {})
    if adapted_singles:
        pairs = ", ".join(f"{t} {singles.get(t, float('nan')):.1f} -> {v:.1f}" for t, v in adapted_singles.items())
        lines += ["", f"Single-task scores of the later tasks, original base -> adapted base: {pairs}."]
    lines.append("")
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def _parse_arm(parser: argparse.ArgumentParser, text: str) -> Arm:
    name, sep, overrides = text.partition("=")
    try:
        parsed = json.loads(overrides) if sep else None
    except json.JSONDecodeError as exc:
        parser.error(f"--arm {name}: overrides are not JSON ({exc})")
    if not name or not isinstance(parsed, dict) or name in {a.name for a in ARMS} | {"joint", "single_task"}:
        parser.error(f'--arm wants NEW_NAME={{"dotted.config.field": value, ...}}, got {text!r}')
    return Arm(name, parsed, "given with --arm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="bounds + recommended arm, one seed (< 10 min, 2 cores)")
    size.add_argument("--smoke", action="store_true", help="3 tasks, sequential + recommended (the CI test)")
    parser.add_argument("--config", default=None, help="clm YAML (default include/clm.yaml)")
    parser.add_argument(
        "--arms",
        default=None,
        help="comma list of arms (default: all of the scale); known: " + ", ".join(a.name for a in ARMS),
    )
    parser.add_argument(
        "--arm",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="an extra arm: config overrides on top of every strategy off, e.g. "
        """'mine={"training.replay.enabled": true, "training.replay.mix_ratio": 0.3}' (repeatable)""",
    )
    parser.add_argument(
        "--stream",
        type=Path,
        default=None,
        metavar="DIR",
        help="your own tasks instead of the demo's tickets: one NN_task.train.EXT + NN_task.test.EXT pair per task "
        "(EXT jsonl, ndjson, json, csv or parquet; records with prompt and response), NN giving the order; "
        "--smoke takes its first 3 tasks. See docs/continual.md",
    )
    parser.add_argument(
        "--train-per-task",
        type=int,
        default=None,
        metavar="N",
        help="training examples per task (demo stream: how many to draw, default the scale's; --stream: a cap, "
        "drawn by the seed, default all)",
    )
    parser.add_argument(
        "--test-per-task", type=int, default=None, metavar="N", help="held-out examples per task, as --train-per-task"
    )
    parser.add_argument(
        "--seeds",
        default=None,
        help="comma list of seeds; default: the scale's. A seed draws the demo stream and the training randomness; "
        "with --stream it draws only the training randomness and the subsamples of --train/test-per-task",
    )
    parser.add_argument(
        "--domain-text",
        type=Path,
        default=None,
        metavar="DIR",
        help="unlabelled text of the stream's later domain (.txt, .md, .jsonl): adds the arm recommended_domain, "
        "the recommended combination on a base adapted to it (clm adapt-domain)",
    )
    parser.add_argument(
        "--domain-from",
        type=int,
        default=1,
        metavar="N",
        help="the stream's task number (1 = first) where the later domain starts; the base is adapted there",
    )
    parser.add_argument("--out-dir", default=str(REPO / "bench" / "results"))
    parser.add_argument(
        "--name", default=None, help="output file stem (default continual[_STREAM][_quick|_smoke], STREAM the folder)"
    )
    args = parser.parse_args(argv)
    for flag in ("train_per_task", "test_per_task"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} wants a number of examples >= 1")
    logging.basicConfig(level=logging.WARNING)
    scale_name = "quick" if args.quick else "smoke" if args.smoke else "full"
    arm_names = args.arms.split(",") if args.arms else list(SCALES[scale_name].arms)
    unknown = set(arm_names) - {a.name for a in ARMS}
    if unknown:
        parser.error(f"unknown arm(s) {', '.join(sorted(unknown))}")
    arms = [a for a in ARMS if a.name in arm_names] + [_parse_arm(parser, text) for text in args.arm]
    # A user's stream gets its own file names, so it never overwrites the demo's results that the docs quote.
    stem = args.name or "_".join(
        ["continual"]
        + ([args.stream.resolve().name] if args.stream else [])
        + ([scale_name] if scale_name != "full" else [])
    )
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="clm-bench-continual-") as home:
        seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else list(SCALES[scale_name].seeds)
        try:
            result = run(
                scale_name,
                args.config,
                arms,
                seeds,
                Path(home),
                args.stream,
                args.train_per_task,
                args.test_per_task,
                args.domain_text,
                args.domain_from,
            )
        except (StreamError, ClmError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    result["total_s"] = round(time.monotonic() - start, 1)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2, default=str))
    (out_dir / f"{stem}.md").write_text(report.markdown(result) + domain_markdown(result))
    report.heatmaps(result, out_dir / f"{stem}.png")
    print("\n" + report.markdown(result) + domain_markdown(result))
    print(f"wrote {out_dir / stem}.json|md|png in {result['total_s'] / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
