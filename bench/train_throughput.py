"""Training throughput and model FLOPs utilisation (MFU) of one update step, LoRA and full fine-tune, optionally
under DeepSpeed ZeRO, on a Llama-style model built from a config (no weights downloaded, random init: speed does
not depend on the values).

A step is what clm's training loop does per batch: forward, backward, optimizer step (AdamW), on random token ids
of ``--seq-len``. The first ``--warmup`` steps are not timed (allocator, kernels, DeepSpeed's first step). Model
FLOPs per token follow the PaLM paper's accounting (Chowdhery et al., 2022, appendix B): ``6 N + 12 L H S`` for a
full fine-tune (N parameters, L layers, H hidden size, S sequence length), and ``4 N + 12 L H S`` with LoRA (no
weight gradients for the frozen base; the adapters' own FLOPs are under 1 % and left out). MFU is achieved model
FLOP/s over the device's peak dense bf16 FLOP/s (``--peak-tflops``, or known for H100/H200/A100)::

    clm bench train-throughput                         # ~125M config, LoRA and full, plain PyTorch, bf16 on GPU
    clm bench train-throughput --size 1b --zero 2      # ~1B config under DeepSpeed ZeRO-2 (include/deepspeed)
    clm bench train-throughput --smoke                 # a tiny config for 3 steps on CPU: the CI test

Writes ``train_throughput[_smoke].json`` and ``.md`` to ``--out-dir`` (``bench/results``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

REPO = Path(__file__).resolve().parent.parent

SIZES = {
    # name: (hidden, intermediate, layers, heads) of a Llama-style decoder; vocab 32000.
    "tiny": (64, 128, 2, 4),
    "125m": (768, 2048, 12, 12),
    "350m": (1024, 2816, 24, 16),
    "1b": (2048, 5632, 22, 32),
}
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0}
"""Dense bf16 tensor-core peaks from the vendors' data sheets (SXM parts; PCIe H100 is lower: pass --peak-tflops)."""


@dataclass
class Result:
    mode: str
    """``lora`` or ``full``."""
    parameters: int
    trainable: int
    tokens_per_step: int
    step_seconds: float
    tokens_per_s: float
    model_tflops: float
    """Achieved model TFLOP/s (the FLOPs the model needs, not what the hardware executed)."""
    mfu: float | None
    """``model_tflops`` over the device's peak; None when the peak is unknown (CPU)."""
    peak_memory_gib: float | None


def build_model(size: str, seq_len: int, dtype: torch.dtype):
    from transformers import LlamaConfig, LlamaForCausalLM

    hidden, inter, layers, heads = SIZES[size]
    config = LlamaConfig(vocab_size=32000, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
                         num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=seq_len,
                         tie_word_embeddings=False)  # fmt: skip
    return LlamaForCausalLM(config).to(dtype), config


def flops_per_token(n_params: int, config, seq_len: int, lora: bool) -> float:
    attention = 12 * config.num_hidden_layers * config.hidden_size * seq_len
    return (4 if lora else 6) * n_params + attention


def peak_tflops(device: torch.device, given: float | None) -> float | None:
    if given:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def run_mode(args, mode: str, device: torch.device, dtype: torch.dtype) -> Result:
    model, config = build_model(args.size, args.seq_len, dtype)
    n_params = sum(p.numel() for p in model.parameters())
    if mode == "lora":
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules="all-linear", lora_dropout=0.0))
    model.to(device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4)
    engine = None
    if args.zero is not None:
        import deepspeed

        from clm_lib.config import load_config
        from clm_lib.training.deepspeed_engine import ensure_process_group
        from clm_lib.training.deepspeed_engine import load_config as ds_config

        training = load_config(REPO / "include" / "clm.yaml").training
        training.batch_size = args.batch_size
        ds = ds_config(f"include/deepspeed/zero{args.zero}.json", training)
        if dtype == torch.bfloat16:
            ds["bf16"] = {"enabled": True}
        ensure_process_group()
        engine, optimizer, _, _ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds)
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, config.vocab_size, (args.batch_size, args.seq_len), generator=gen).to(device)

    def step() -> None:
        out = (engine or model)(input_ids=batch, labels=batch)
        if engine is not None:
            engine.backward(out.loss)
            engine.step()
        else:
            out.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(args.warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        step()
    sync()
    seconds = (time.perf_counter() - t0) / args.steps
    tokens = args.batch_size * args.seq_len
    achieved = flops_per_token(n_params, config, args.seq_len, mode == "lora") * tokens / seconds / 1e12
    peak = peak_tflops(device, args.peak_tflops)
    memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return Result(mode, n_params, sum(p.numel() for p in trainable), tokens, round(seconds, 4),
                  round(tokens / seconds, 1), round(achieved, 3), round(achieved / peak, 4) if peak else None,
                  round(memory, 2) if memory is not None else None)  # fmt: skip


def report(meta: dict, results: list[Result]) -> str:
    lines = [f"# Training throughput: {meta['size']} ({meta['device']}, {meta['dtype']}, ZeRO {meta['zero']})", "",
             f"batch {meta['batch_size']} x seq {meta['seq_len']}, {meta['steps']} timed steps after "
             f"{meta['warmup']} warm-up; {meta['when']}", "",
             "| mode | parameters | trainable | step s | tokens/s | model TFLOP/s | MFU | peak GiB |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in results:
        mfu = f"{100 * r.mfu:.1f} %" if r.mfu is not None else "n/a (no peak for this device)"
        mem = f"{r.peak_memory_gib}" if r.peak_memory_gib is not None else "-"
        lines.append(f"| {r.mode} | {r.parameters:,} | {r.trainable:,} | {r.step_seconds} | {r.tokens_per_s:,.0f} "
                     f"| {r.model_tflops} | {mfu} | {mem} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="clm bench train-throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="125m")
    p.add_argument("--modes", default="lora,full", help="comma-separated: lora, full")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--zero", type=int, choices=(0, 1, 2), help="train under DeepSpeed ZeRO at this stage")
    p.add_argument("--peak-tflops", type=float, help="the device's peak dense bf16 TFLOP/s, for MFU")
    p.add_argument("--smoke", action="store_true", help="tiny config, 3 steps, CPU: a check that it runs")
    p.add_argument("--out-dir", type=Path, default=REPO / "bench" / "results")
    args = p.parse_args(argv)
    if args.smoke:
        args.size, args.batch_size, args.seq_len, args.steps, args.warmup = "tiny", 2, 32, 3, 1
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    os.environ.setdefault("DS_ACCELERATOR", "cuda" if device.type == "cuda" else "cpu")  # before deepspeed loads
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"lora", "full"}:
        p.error(f"--modes: lora and/or full, not {args.modes!r}")
    torch.manual_seed(0)
    results = [run_mode(args, mode, device, dtype) for mode in modes]
    meta = {"size": args.size, "device": torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
            "dtype": str(dtype).removeprefix("torch."), "zero": args.zero, "batch_size": args.batch_size,
            "seq_len": args.seq_len, "steps": args.steps, "warmup": args.warmup,
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__}  # fmt: skip
    name = "train_throughput_smoke" if args.smoke else f"train_throughput_{args.size}"
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{name}.json").write_text(json.dumps({**meta, "results": [asdict(r) for r in results]}, indent=2))
    text = report(meta, results)
    (args.out_dir / f"{name}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
