"""Markdown tables and a PNG heatmap of R from the continual-learning benchmark's JSON result."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _num(v: float | None, fmt: str = "{:.1f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def _with_sd(a: dict[str, Any], key: str, fmt: str) -> str:
    sd = a.get("spread", {}).get(key, {}).get("sd")
    return _num(a.get(key), fmt) + ("" if sd is None else f" ± {fmt.format(sd)}")


def _source(result: dict[str, Any]) -> str:
    tasks, train, held = result["tasks"], result["train_rows"], result["eval_rows"]
    stream = result.get("stream")
    if not stream:
        return f"Tasks in order: {', '.join(tasks)}. {train} training and {held} held-out tickets per task"
    # A user's tasks rarely have equal sizes: give each its own.
    sizes = ", ".join(f"{t} ({train[t]}/{held[t]})" for t in tasks)
    return (
        f"Stream {stream['path']} (sha256 {stream['sha256'][:12]}). Tasks in order, with training/held-out "
        f"examples: {sizes}"
    )


def markdown(result: dict[str, Any]) -> str:
    arms = result["arms"]
    tasks = result["tasks"]
    seeds = result["seeds"]
    lines = [
        f"# Continual-learning benchmark ({result['scale']})",
        "",
        _source(result)
        + f"; config {result['config']}"
        + (f" with {result['scale_overrides']}" if result["scale_overrides"] else "")
        + f"; seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
        + (" (means over seeds; ± is the standard deviation across seeds)." if len(seeds) > 1 else "."),
        "",
        "| arm | AA | BWT | mean forgetting | min R[i][i] / single | gap closure | last update cost (tokens / wall) "
        "| cumulative cost (tokens / wall) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, a in arms.items():
        cost = a["cost"]
        lines.append(
            f"| {name} | {_with_sd(a, 'AA', '{:.1f}')} | {_with_sd(a, 'BWT', '{:.1f}')} | {_num(a['mean_forgetting'])} "
            f"| {_num(a['min_learning_ratio'], '{:.2f}')} | {_with_sd(a, 'gap_closure', '{:.3f}')} "
            f"| {_num(cost['tokens']['last'], '{:.2f}')} / {_num(cost['seconds']['last'], '{:.2f}')} "
            f"| {_num(cost['tokens']['cumulative'], '{:.2f}')} / {_num(cost['seconds']['cumulative'], '{:.2f}')} |"
        )
    for name, why in result.get("pending", {}).items():
        lines.append(f"| {name} | pending: {why} | | | | | | |")
    single = result["single_task"]["scores"]
    if single:
        scores = ", ".join(f"{t} {_num(v)}" for t, v in single.items())
        lines += ["", f"Single-task scores (a fresh adapter per task): {scores}."]
    lines += _wording_lines(result)
    for check_key, title in (("target_checks", "Targets (issue 3)"), ("bound_checks", "Bounds of this scale")):
        if result.get(check_key):
            lines += ["", f"**{title}**", "", "| check | value | bound | met |", "|---|---|---|---|"]
            for t in result[check_key]:
                lines.append(
                    f"| {t['name']} | {_num(t['value'], '{:.3f}')} | {t['op']} {_num(t['bound'], '{:g}')} "
                    f"| {'yes' if t['met'] else '**no**'} |"
                )
    for name, a in arms.items():
        lines += [
            "",
            f"R, {name} (row: after update i; column: task)",
            "",
            "| after | " + " | ".join(tasks) + " |",
            "|---" * (len(tasks) + 1) + "|",
        ]
        for i, row in enumerate(a["R"]):
            lines.append(f"| {i} {tasks[i]} | " + " | ".join(_num(v) if v is not None else "" for v in row) + " |")
    lines += [
        "",
        f"Total {result.get('total_s', 0) / 60:.1f} min; 1-min load average before/after "
        f"{result['machine']['load_before'][0]:.1f}/{result['machine']['load_after'][0]:.1f} "
        f"on {result['machine']['cpus']} CPUs.",
        "",
    ]
    return "\n".join(lines)


def _wording_lines(result: dict[str, Any]) -> list[str]:
    """Held-out names against held-out wordings of the same symptoms, for each final model (demo stream only)."""
    finals = [(name, a["heldout_wording"]) for name, a in result["arms"].items() if a.get("heldout_wording")]
    single = result["single_task"].get("heldout_wording")
    if single:
        finals.append(("single_task (own adapter per task)", single))
    if not finals:
        return []
    tasks = list(finals[0][1]["wording"])
    lines = [
        "",
        "**Held-out names vs held-out wordings** (the final model; each cell: held-out names / held-out wordings, "
        "the same symptoms said in words no training ticket or warm-up text uses)",
        "",
        "| model | names | wordings | " + " | ".join(tasks) + " |",
        "|---" * (len(tasks) + 3) + "|",
    ]
    for name, w in finals:
        cells = " | ".join(f"{_num(w['names'][t])} / {_num(w['wording'][t])}" for t in tasks)
        lines.append(f"| {name} | {_num(w['names_mean'])} | {_num(w['wording_mean'])} | {cells} |")
    return lines


def heatmaps(result: dict[str, Any], path: Path) -> Path:
    """One heatmap of R per arm, in a grid (matplotlib, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    arms = result["arms"]
    tasks = result["tasks"]
    cols = min(4, len(arms))
    rows = -(-len(arms) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols + 1.5, 3.3 * rows), squeeze=False)
    image = None
    for k, (ax, (name, a)) in enumerate(zip(axes.flat, arms.items(), strict=False)):
        data = np.array([[np.nan if v is None else v for v in row] for row in a["R"]], dtype=float)
        image = ax.imshow(data, vmin=0, vmax=100, cmap="viridis")
        for (i, j), v in np.ndenumerate(data):
            if not np.isnan(v):
                ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v < 60 else "black")
        ax.set_title(f"{name}\nAA {a['AA']:.1f}  BWT {_num(a['BWT'])}", fontsize=9)
        ax.set_xticks(range(len(tasks)), [t[:8] for t in tasks], rotation=45, fontsize=7)
        first_column = k % cols == 0
        ax.set_yticks(range(len(a["R"])), [f"after {t[:8]}" for t in tasks] if first_column else [], fontsize=7)
    for ax in list(axes.flat)[len(arms) :]:
        ax.axis("off")
    fig.subplots_adjust(hspace=0.5)
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6, label="accuracy on held-out tickets (%)")
    fig.suptitle(f"R[i][j]: accuracy on task j after update i ({result['scale']})", fontsize=10)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
