"""Drift detectors on planted shifts built from the demo stream: detection power, false alarms, wall time.

Reference window: tickets of three product lines (routers, billing, thermostats), task drawn uniformly per row.
Current window, one scenario at a time (every row drawn independently, so "no drift" really is the same
distribution):

- ``no_drift``: drawn exactly like the reference.
- ``vocabulary_shift``: 20 % of rows carry a ticket of a product line the reference never saw (EV chargers or
  the payments API) under their unchanged task label: the words move, the task mix does not.
- ``task_mix_shift``: the task mix goes from 1/3 each to 1/2, 1/4, 1/4.
- ``length_shift``: 30 % of tickets get one more sentence of product detail (same product line, same words).
- ``gradual_drift``: the share of new-vocabulary rows grows linearly across the window from 0 to 30 % (15 % on
  average): the start of a vocabulary shift.
- ``concept_shift``: the desk changes one triage rule (routers that broke after an update now go to hardware for
  a replacement); the stand-in champion still answers the old way. Only the ``concept`` detector is meant to see it.

Windows are drawn with replacement from pools of distinct generated tickets (``--pool`` per product line), so each
distinct ticket is embedded once for the whole run; the detectors subsample a fixed number of rows per side, so
what they see is an i.i.d. sample of the scenario's distribution at every window size. The two model-based
detectors use stand-ins for the champion: a unigram language model fitted on reference-line tickets
(``perplexity``) and a scorer that answers right with probability 0.95 when it knows the (task, answer) pair
(``concept``, evaluation score 95 % on 200 examples per task). The ``policy`` row is the combined decision of the
detectors that trigger retraining by default (embedding MMD, text statistics, task mix, concept).

Wall time is measured separately on freshly generated windows of distinct tickets, through ``run_drift_check``
(clm's SQLite database included), with the embedding model already loaded in the process (its import and load
time is reported separately): ``cold`` embeds both sides, ``warm`` is a second check against the same reference,
whose embeddings are then cached: the usual case for a scheduled monitor.

    python bench/drift.py            # full: 1k, 10k, 100k per side, 50 repetitions (100 without drift)
    python bench/drift.py --quick    # 1k and 10k, 10 repetitions (20 without drift): about 3 minutes
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import platform
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

from clm_lib.demo.stream import PRODUCT_LINES, generate_task
from clm_lib.drift import DriftContext
from clm_lib.drift.config import DriftConfig
from clm_lib.drift.monitor import run_detectors
from clm_lib.drift.policy import decide
from clm_lib.drift.representation import Representation, get_representation
from clm_lib.drift.text_stats import words
from clm_lib.drift.window import TextWindow

REPO = Path(__file__).resolve().parent.parent
REFERENCE_TASKS = ("routers", "billing", "thermostats")
NEW_LINES = ("ev_chargers", "payments_api")
SCENARIOS = ("no_drift", "vocabulary_shift", "task_mix_shift", "length_shift", "gradual_drift", "concept_shift")
MEANT_FOR = {
    "embedding_mmd": ("vocabulary_shift", "gradual_drift", "task_mix_shift"),
    "embedding_mmd[sentence]": ("vocabulary_shift", "gradual_drift", "task_mix_shift"),
    "embedding_mmd[hashed]": ("vocabulary_shift", "gradual_drift", "task_mix_shift"),
    "text_stats": ("vocabulary_shift", "gradual_drift", "length_shift"),
    "task_mix": ("task_mix_shift",),
    "perplexity": ("vocabulary_shift", "gradual_drift"),
    "concept": ("concept_shift",),
    "policy": ("vocabulary_shift", "task_mix_shift", "length_shift", "gradual_drift", "concept_shift"),
}
"""Which planted shifts each detector is built to see: the power target applies to these cells."""
CHANGED_RULE = ("routers", "team: network | action: firmware rollback", "team: hardware | action: replace unit")
TRIGGERING = ("embedding_mmd", "text_stats", "task_mix", "concept")


# --- scenario data ------------------------------------------------------------------------------------
class Pools:
    """Distinct tickets per product line, their answers, and per reference line a pool with one extra sentence."""

    def __init__(self, size: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.prompts: dict[str, np.ndarray] = {}
        self.responses: dict[str, np.ndarray] = {}
        for task in (*REFERENCE_TASKS, *NEW_LINES):
            recs = generate_task(task, size, seed)
            self.prompts[task] = np.array([r["prompt"] for r in recs], dtype=object)
            self.responses[task] = np.array([r["response"] for r in recs], dtype=object)
        self.longer: dict[str, np.ndarray] = {}
        for task in REFERENCE_TASKS:
            details = PRODUCT_LINES[task].details
            self.longer[task] = np.array(
                [
                    p + " " + details[rng.integers(len(details))].format(
                        number=rng.integers(100000, 999999), amount=f"{rng.integers(9, 89)}.{rng.integers(100):02d}"
                    )
                    for p in self.prompts[task]
                ],
                dtype=object,
            )

    def all_texts(self) -> list[str]:
        return sorted({t for pool in (*self.prompts.values(), *self.longer.values()) for t in pool})


def draw_window(pools: Pools, scenario: str, n: int, rng: np.random.Generator, *, current: bool) -> TextWindow:
    """``n`` i.i.d. rows of the reference distribution, or of ``scenario``'s current distribution."""
    mix = np.full(len(REFERENCE_TASKS), 1 / len(REFERENCE_TASKS))
    if current and scenario == "task_mix_shift":
        mix = np.array([0.5, 0.25, 0.25])
    task_idx = rng.choice(len(REFERENCE_TASKS), size=n, p=mix)
    new_share = np.zeros(n)
    if current and scenario == "vocabulary_shift":
        new_share[:] = 0.2
    elif current and scenario == "gradual_drift":
        new_share = np.linspace(0.0, 0.3, n)
    longer = (rng.random(n) < 0.3) if current and scenario == "length_shift" else np.zeros(n, dtype=bool)
    is_new = rng.random(n) < new_share
    new_line = rng.integers(len(NEW_LINES), size=n)
    pick = rng.integers(len(pools.prompts[REFERENCE_TASKS[0]]), size=n)
    prompts = np.empty(n, dtype=object)
    responses = np.empty(n, dtype=object)
    tasks = np.array(REFERENCE_TASKS, dtype=object)[task_idx]
    for i, task in enumerate(REFERENCE_TASKS):
        rows = (task_idx == i) & ~is_new
        prompts[rows] = pools.prompts[task][pick[rows]]
        prompts[rows & longer] = pools.longer[task][pick[rows & longer]]
        responses[rows] = pools.responses[task][pick[rows]]
    for j, line in enumerate(NEW_LINES):
        rows = is_new & (new_line == j)
        prompts[rows] = pools.prompts[line][pick[rows]]
        responses[rows] = pools.responses[line][pick[rows]]
    if current and scenario == "concept_shift":
        task, old, new = CHANGED_RULE
        responses[(tasks == task) & (responses == old)] = new
    return TextWindow(prompts=prompts, tasks=tasks, responses=responses)


# --- stand-ins for the champion ------------------------------------------------------------------------
class MemoEmbedder(Representation):
    """Sentence embeddings computed once per distinct text for the whole benchmark (same vectors, less time)."""

    def __init__(self, inner: Representation, texts: Sequence[str]) -> None:
        self.inner, self.name = inner, inner.name
        self.memo = dict(zip(texts, inner.embed(list(texts)), strict=True))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        if missing:
            self.memo.update(zip(missing, self.inner.embed(missing), strict=True))
        return np.stack([self.memo[t] for t in texts])


def unigram_nll(pools: Pools) -> Callable[[Sequence[str]], np.ndarray]:
    """A champion stand-in for perplexity: add-one unigram LM over the words of reference-line tickets."""
    counts = Counter(w for task in REFERENCE_TASKS for p in pools.prompts[task] for w in words(p))
    total, vocab = sum(counts.values()), len(counts) + 1

    def nll(texts: Sequence[str]) -> np.ndarray:
        out = []
        for t in texts:
            ws = words(t)
            out.append(np.mean([-math.log((counts.get(w, 0) + 1) / (total + vocab)) for w in ws]) if ws else np.nan)
        return np.array(out)

    return nll


def concept_scorer(pools: Pools, seed: int) -> tuple[Callable[[TextWindow], np.ndarray], dict]:
    """A champion stand-in for concept drift: right with probability 0.95 on (task, answer) pairs it learned."""
    known = {(t, r) for t in REFERENCE_TASKS for r in set(pools.responses[t])}
    rng = np.random.default_rng(seed)

    def score(window: TextWindow) -> np.ndarray:
        knows = np.array([(t, r) in known for t, r in zip(window.tasks, window.responses, strict=True)])
        return (knows & (rng.random(len(window)) < 0.95)).astype(float)

    return score, {t: (95.0, 200) for t in REFERENCE_TASKS}


# --- the study -------------------------------------------------------------------------------------------
def run_power(args, pools: Pools, embedder: Representation, settings: DriftConfig) -> dict:
    sentence_only = copy.deepcopy(settings)
    sentence_only.embedding_mmd.views = ["sentence"]
    hashed = copy.deepcopy(settings)
    hashed.embedding_mmd.views = ["hashed"]
    score_fn, eval_scores = concept_scorer(pools, args.seed)
    context = DriftContext(embedder=embedder, nll_fn=unigram_nll(pools), score_fn=score_fn, eval_scores=eval_scores)
    cells: dict[str, dict] = {}
    for size in args.sizes:
        for scenario in SCENARIOS:
            fired: dict[str, int] = Counter()
            seconds: dict[str, list[float]] = {}
            # False alarms are rarer events than detections: the null gets more repetitions for a tighter estimate.
            reps = args.null_reps if scenario == "no_drift" else args.reps
            for rep in range(reps):
                rng = np.random.default_rng([args.seed, size, SCENARIOS.index(scenario), rep])
                ref = draw_window(pools, scenario, size, rng, current=False)
                cur = draw_window(pools, scenario, size, rng, current=True)
                settings.seed = hashed.seed = sentence_only.seed = rep  # fresh subsamples, permutations per repetition
                results = run_detectors(ref, cur, settings, context,
                                        ["embedding_mmd", "text_stats", "task_mix", "perplexity", "concept"])
                results += [
                    replace(r, detector="embedding_mmd[sentence]")
                    for r in run_detectors(ref, cur, sentence_only, context, ["embedding_mmd"])
                ]
                results += [
                    replace(r, detector="embedding_mmd[hashed]")
                    for r in run_detectors(ref, cur, hashed, DriftContext(), ["embedding_mmd"])
                ]
                for r in results:
                    fired[r.detector] += bool(r.drift)
                    seconds.setdefault(r.detector, []).append(r.duration_s)
                policy = decide([r for r in results if r.detector in TRIGGERING], settings, new_rows=None)
                fired["policy"] += policy.retrain
            for det in MEANT_FOR:
                ci = binomtest(fired[det], reps).proportion_ci(confidence_level=0.95, method="exact")
                cells.setdefault(det, {}).setdefault(scenario, {})[str(size)] = {
                    "fired": fired[det],
                    "reps": reps,
                    "rate": fired[det] / reps,
                    "ci95": [round(ci.low, 4), round(ci.high, 4)],
                    "median_s": float(np.median(seconds[det])) if det in seconds else None,
                }
            print(f"  {size:>7} {scenario:<17} " + " ".join(f"{d}={fired[d]}/{reps}" for d in MEANT_FOR), flush=True)
    return cells


def fresh_windows(n: int, seed: int) -> tuple[list[dict], list[dict]]:
    per_task = math.ceil(n / len(REFERENCE_TASKS))
    ref, cur = [], []
    for task in REFERENCE_TASKS:
        recs = generate_task(task, 2 * per_task, seed)
        ref += recs[:per_task]
        cur += recs[per_task:]
    return ref[:n], cur[:n]


def run_timing(args, settings: DriftConfig) -> dict:
    """End-to-end ``run_drift_check`` on fresh windows of distinct tickets, cold then warm, per size."""
    from clm_lib.config import load_config
    from clm_lib.db import upgrade
    from clm_lib.drift.monitor import run_drift_check

    out = {}
    for size in args.sizes:
        ref, cur = fresh_windows(size, args.seed + 7)
        _, cur2 = fresh_windows(size, args.seed + 8)
        with tempfile.TemporaryDirectory() as home:
            cfg = load_config(REPO / "include" / "clm.yaml", environ={"CLM_HOME": home})
            upgrade(cfg.database_url)
            timings = {}
            for label, current in (("cold", cur), ("warm", cur2)):
                start = time.perf_counter()
                decision = run_drift_check(cfg, reference=ref, current=current, new_rows=len(current),
                                           settings=settings, detectors=["embedding_mmd", "text_stats", "task_mix"])
                timings[label] = {
                    "seconds": round(time.perf_counter() - start, 3),
                    "per_detector_s": {r.detector: r.duration_s for r in decision.results if r.detector != "volume"},
                }
            out[str(size)] = timings
            print(f"  {size:>7} cold {timings['cold']['seconds']:.2f}s warm {timings['warm']['seconds']:.2f}s",
                  flush=True)
    return out


def markdown(result: dict) -> str:
    sizes = [str(s) for s in result["args"]["sizes"]]
    lines = [
        "| detector | scenario | " + " | ".join(f"{int(s):,} / side" for s in sizes) + " |",
        "|---|---|" + "---|" * len(sizes),
    ]
    for det, by_scenario in result["power"].items():
        for scenario in SCENARIOS:
            cells = by_scenario[scenario]
            if scenario != "no_drift" and scenario not in MEANT_FOR[det]:
                continue
            kind = "false alarms" if scenario == "no_drift" else "power"
            row = " | ".join(f"{cells[s]['fired']}/{cells[s]['reps']}" for s in sizes)
            lines.append(f"| {det} | {scenario} ({kind}) | {row} |")
    lines += ["", "| check (embedding MMD + text statistics + task mix, stored) | "
              + " | ".join(f"{int(s):,} / side" for s in sizes) + " |", "|---|" + "---|" * len(sizes)]
    for label in ("cold", "warm"):
        lines.append(f"| {label} | " + " | ".join(f"{result['timing'][s][label]['seconds']:.2f} s" for s in sizes)
                     + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k per side, 10 repetitions, small pools")
    parser.add_argument("--sizes", type=int, nargs="+", help="rows per side (default 1000 10000 100000)")
    parser.add_argument("--reps", type=int, help="repetitions per scenario and size (default 50; quick 10)")
    parser.add_argument("--null-reps", type=int, help="repetitions of no_drift (default: twice --reps)")
    parser.add_argument("--pool", type=int, help="distinct tickets per product line (default 1500; quick 400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "drift.json"))
    args = parser.parse_args(argv)
    args.sizes = args.sizes or ([1000, 10000] if args.quick else [1000, 10000, 100000])
    args.reps = args.reps or (10 if args.quick else 50)
    args.null_reps = args.null_reps or 2 * args.reps
    args.pool = args.pool or (400 if args.quick else 1500)
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    settings = DriftConfig()

    t = time.perf_counter()
    rep, fallback = get_representation("auto")
    import_s = time.perf_counter() - t
    if fallback:
        print(f"warning: {fallback}", file=sys.stderr)
    t = time.perf_counter()
    pools = Pools(args.pool, args.seed)
    texts = pools.all_texts()
    embedder = MemoEmbedder(rep, texts)
    embed_s = time.perf_counter() - t
    print(f"embedding model loaded in {import_s:.1f}s; {len(texts)} distinct tickets embedded in {embed_s:.1f}s "
          f"({len(texts) / embed_s:.0f}/s)", flush=True)

    print("wall time (run_drift_check, stored):", flush=True)
    timing = run_timing(args, settings)
    print("detections per scenario:", flush=True)
    power = run_power(args, pools, embedder, settings)

    result = {
        "command": "python bench/drift.py" + (" --quick" if args.quick else ""),
        "args": {k: v for k, v in vars(args).items() if k != "out"},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()},
        "representation": rep.name,
        "settings": settings.model_dump(mode="json"),
        "embedding": {"model_load_s": round(import_s, 2), "texts": len(texts), "per_second": len(texts) / embed_s},
        "timing": timing,
        "power": power,
        "meant_for": MEANT_FOR,
        "total_s": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"wrote {out} in {result['total_s']:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
