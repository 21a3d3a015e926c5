"""One continual update of a ~100M-parameter Llama-, GPT-2- and Qwen2-style base on CPU: wall time and peak memory.

The same loop as every clm update (``include/tiny.yaml`` with only ``model.architecture`` changed, as in
``include/arch/``): build the base from its config (locally trained tokenizer, ``--pretrain-steps`` warm-up, none
by default: speed does not depend on the weights), train one LoRA update (``all-linear``, PEFT finds the layers of
each architecture) of ``--steps`` steps on generated demo records of one product line with another's replayed,
then score both product lines and answer a few prompts greedily. Each phase of each architecture runs in a fresh
process, so its peak resident memory (``ru_maxrss``) is its own: ``build`` (tokenizer, model init, save),
``update`` (``clm_lib.training.recipe.train_update``: load, LoRA, train, save the adapter) and ``evaluate``
(load base + adapter, ``score_tasks``, greedy ``complete``). ``idle_rss_mib`` is a process's resident memory
after its imports, before any work: the part of each peak that is Python, torch, transformers and peft::

    clm bench architectures                      # ~100M configs of llama, gpt2, qwen2; 20 steps each
    clm bench architectures --steps 5            # the same, fewer steps
    clm bench architectures --smoke              # the include/arch sizes, 2 steps: the CI test

Writes ``architectures[_smoke].json`` and ``.md`` to ``--out-dir`` (``bench/results``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
PHASES = ("build", "update", "evaluate")
NEW_TASK, REPLAY_TASK = "routers", "billing"

SIZES: dict[str, dict[str, dict[str, Any]]] = {
    # The tokenizer is clm's own 1,024-token one, so nearly every parameter is in the blocks. The widths are chosen
    # to land each architecture near 100M parameters; the numbers the run records are exact.
    "100m": {
        "llama": {"model_type": "llama", "hidden_size": 768, "intermediate_size": 2560, "num_hidden_layers": 12,
                  "num_attention_heads": 12, "num_key_value_heads": 12, "max_position_embeddings": 128},
        # GPT-2 small's blocks (768 wide, 4x MLP), two more of them to make up for its tied output layer.
        "gpt2": {"model_type": "gpt2", "n_embd": 768, "n_layer": 14, "n_head": 12, "n_positions": 128},
        # Grouped-query attention (4 key/value heads for 12) leaves room for a wider MLP at the same size.
        "qwen2": {"model_type": "qwen2", "hidden_size": 768, "intermediate_size": 2816, "num_hidden_layers": 12,
                  "num_attention_heads": 12, "num_key_value_heads": 4, "max_position_embeddings": 128},
        "mistral": {"model_type": "mistral", "hidden_size": 768, "intermediate_size": 2816, "num_hidden_layers": 12,
                    "num_attention_heads": 12, "num_key_value_heads": 4, "max_position_embeddings": 128},
    },
}  # fmt: skip


def _arch_file(arch: str) -> Path:
    return REPO / "include" / ("tiny.yaml" if arch == "llama" else f"arch/{arch}.yaml")


def architecture(arch: str, size: str) -> dict[str, Any]:
    """``model.architecture`` of ``arch`` at ``size`` (``tiny``: the shipped config's own)."""
    if size == "tiny":
        import yaml

        return yaml.safe_load(_arch_file(arch).read_text())["model"]["architecture"]
    return SIZES[size][arch]


def _rss_mib() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def records(task: str, n: int, seed: int):
    """Demo records with the columns and content ids training expects."""
    import pyarrow as pa

    from clm_lib.demo.stream import generate_task

    rows = generate_task(task, n, seed)
    ids = [hashlib.sha256(f"{r['task']}{r['prompt']}".encode()).hexdigest()[:16] for r in rows]
    return pa.Table.from_pylist([{"id": i, **r} for i, r in zip(ids, rows, strict=True)])


def step_timer():
    """A strategy that times each optimizer step (batch to step), load and save left out."""
    import statistics

    from clm_lib.training.strategies import Strategy

    class StepTimer(Strategy):
        name = "step_timer"

        def __init__(self) -> None:
            self.seconds: list[float] = []
            self._start = 0.0

        def before_batch(self, ctx, batch):
            if not self._start:
                self._start = time.perf_counter()
            return None

        def after_step(self, ctx) -> None:
            self.seconds.append(time.perf_counter() - self._start)
            self._start = 0.0

        def median(self) -> float:
            return round(statistics.median(self.seconds), 3) if self.seconds else 0.0

    return StepTimer()


def _config(work: Path, arch: str, args: argparse.Namespace):
    from clm_lib.config import load_config

    cfg = load_config(REPO / "include" / "tiny.yaml", environ={"CLM_HOME": str(work)})
    cfg.model.base_path = work / "base"
    cfg.model.architecture = architecture(arch, args.size)
    cfg.model.pretrain_steps = args.pretrain_steps
    cfg.training.max_steps = args.steps
    cfg.training.checkpoint_every = args.steps
    cfg.training.threads = args.threads
    cfg.training.device = "cpu"
    return cfg


def phase(name: str, arch: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one phase in this process; returns what it measured."""
    import pyarrow as pa
    import torch
    from safetensors.torch import load_file

    from clm_lib.evaluation.metrics import score_tasks
    from clm_lib.modeling.build import BUILD_INFO, ensure_base_model
    from clm_lib.modeling.generate import complete
    from clm_lib.modeling.load import load_model
    from clm_lib.training.recipe import SUMMARY_FILE, train_update
    from clm_lib.training.strategies import build_strategies

    idle = _rss_mib()  # every phase imports the same, so idle memory compares
    cfg = _config(work, arch, args)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out: dict[str, Any] = {}
    if name == "build":
        info = json.loads((ensure_base_model(cfg) / BUILD_INFO).read_text())
        out = {"parameters": info["parameters"]}
    elif name == "update":
        timer = step_timer()
        result = train_update(cfg, new_data=records(NEW_TASK, args.records, 0),
                              replay_data=records(REPLAY_TASK, args.records // 2, 0), parent_adapter_dir=None,
                              output_dir=work / "update", run_id=f"bench-{arch}",
                              strategies=[*build_strategies(cfg), timer])  # fmt: skip
        summary = json.loads((work / "update" / SUMMARY_FILE).read_text())
        weights = load_file(str(result.adapter_dir / "adapter_model.safetensors"))
        out = {"steps": result.steps, "train_seconds": result.wall_seconds,
               "seconds_per_step": timer.median(), "tokens_seen": result.tokens_seen,
               "final_loss": result.final_loss, "lora_parameters": sum(w.numel() for w in weights.values()),
               "lora_targets": sorted({t.rsplit(".", 1)[-1] for t in summary["lora"]["target_modules"]}),
               "fan_in_fan_out": summary["lora"]["fan_in_fan_out"]}  # fmt: skip
    elif name == "evaluate":
        model, tok = load_model(cfg.base_model_dir, work / "update" / "adapter")
        data = pa.concat_tables([records(t, args.eval_examples, 99) for t in (NEW_TASK, REPLAY_TASK)])
        scores = score_tasks(model, tok, data, max_examples_per_task=args.eval_examples,
                             batch_size=cfg.evaluation.batch_size, max_length=cfg.model.max_length)  # fmt: skip
        answers = complete(model, tok, data.column("prompt").to_pylist()[:4], max_new_tokens=16,
                           max_length=cfg.model.max_length)  # fmt: skip
        out = {"scores": {t: round(s.accuracy, 1) for t, s in scores.items()},
               "examples": sum(s.n for s in scores.values()),
               "generated_tokens": sum(c.completion_tokens for c in answers)}  # fmt: skip
    return {"wall_s": round(time.perf_counter() - started, 2), "peak_rss_mib": _rss_mib(), "idle_rss_mib": idle,
            **out}  # fmt: skip


def _child(name: str, arch: str, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """``phase`` in a fresh interpreter, so its peak memory is its own."""
    result = work / f"{name}.json"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--phase", name, "--arch", arch, "--work", str(work),
           "--size", args.size, "--steps", str(args.steps), "--pretrain-steps", str(args.pretrain_steps),
           "--records", str(args.records), "--eval-examples", str(args.eval_examples),
           "--threads", str(args.threads), "--result", str(result)]  # fmt: skip
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{arch} {name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return {**json.loads(result.read_text()), "process_s": round(time.perf_counter() - started, 2)}


def machine() -> dict[str, Any]:
    import peft
    import torch
    import transformers

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__,
            "load_average": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


def report(meta: dict[str, Any], rows: dict[str, dict[str, Any]]) -> str:
    lines = [f"# One continual update per architecture ({meta['size']}, CPU, {meta['threads']} threads)", "",
             f"{meta['steps']} LoRA steps (batch {meta['batch_size']}, max_length {meta['max_length']}, replay on), "
             f"{meta['pretrain_steps']} warm-up steps; {meta['machine']['cpus']} CPUs "
             f"({meta['machine']['processor']}), load average at the start {meta['machine']['load_average']}; "
             f"{meta['when']}", "",
             "| architecture | parameters | LoRA parameters | LoRA targets | build s | build peak MiB | update s "
             "| s/step | update peak MiB | evaluate s | evaluate peak MiB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for arch, r in rows.items():
        b, u, e = (r[p] for p in PHASES)
        lines.append(f"| {arch} | {b['parameters']:,} | {u['lora_parameters']:,} | {', '.join(u['lora_targets'])} "
                     f"| {b['wall_s']} | {b['peak_rss_mib']:,.0f} | {u['wall_s']} | {u['seconds_per_step']} "
                     f"| {u['peak_rss_mib']:,.0f} | {e['wall_s']} | {e['peak_rss_mib']:,.0f} |")  # fmt: skip
    idle = max(r[p]["idle_rss_mib"] for r in rows.values() for p in PHASES)
    lines += ["", f"Peaks are whole-process resident memory; a process holds up to {idle:,.0f} MiB after its imports "
              "alone. Wall seconds are the phase's own work, without interpreter start-up and imports."]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="clm bench architectures", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=["tiny", *SIZES], default="100m")
    p.add_argument("--archs", default="llama,gpt2,qwen2", help=f"comma-separated, of {', '.join(SIZES['100m'])}")
    p.add_argument("--steps", type=int, default=20, help="LoRA steps of the update")
    p.add_argument("--pretrain-steps", type=int, default=0, help="warm-up steps of the built base")
    p.add_argument("--records", type=int, default=200, help="new records (half as many are replayed)")
    p.add_argument("--eval-examples", type=int, default=20, help="held-out examples scored per product line")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--smoke", action="store_true", help="the include/arch sizes, 2 steps: a check that it runs")
    p.add_argument("--out-dir", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)  # the per-phase child process
    p.add_argument("--arch", help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.phase:
        args.result.write_text(json.dumps(phase(args.phase, args.arch, args.work, args)))
        return 0
    if args.smoke:
        args.size, args.steps, args.records, args.eval_examples, args.threads = "tiny", 2, 32, 4, 1
    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    unknown = sorted(set(archs) - set(SIZES["100m"]))
    if not archs or unknown:
        p.error(f"--archs: {', '.join(SIZES['100m'])}, not {args.archs!r}")
    from clm_lib.config import load_config

    tiny = load_config(REPO / "include" / "tiny.yaml", environ={"CLM_HOME": tempfile.gettempdir()})
    meta = {"size": args.size, "steps": args.steps, "pretrain_steps": args.pretrain_steps, "threads": args.threads,
            "records": args.records, "replay_records": args.records // 2, "eval_examples": args.eval_examples,
            "batch_size": tiny.training.batch_size, "max_length": tiny.model.max_length, "machine": machine(),
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}  # fmt: skip
    rows: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="clm-bench-arch-") as tmp:
        for arch in archs:
            work = Path(tmp) / arch
            work.mkdir()
            rows[arch] = {"architecture": architecture(arch, args.size)}
            for name in PHASES:
                rows[arch][name] = _child(name, arch, work, args)
                print(f"  {arch} {name}: {rows[arch][name]['wall_s']} s, peak {rows[arch][name]['peak_rss_mib']} MiB",
                      flush=True)  # fmt: skip
    name = "architectures_smoke" if args.smoke else "architectures"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{name}.json").write_text(json.dumps({**meta, "architectures": rows}, indent=2))
    text = report(meta, rows)
    (args.out_dir / f"{name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
