"""Helpers of the serving tests: free ports, configs around the test registry, uvicorn in a thread."""

from __future__ import annotations

import socket
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
TINY = REPO / "include" / "tiny.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_adapter(base: Path, out: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    from clm_lib.modeling.load import load_model

    model, tokenizer = load_model(base)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    if seed:
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    peft_model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def serving_cfg(home: Path, registry: dict, **overrides: str):
    """tiny.yaml with its own home, the shared registry, free serving ports, and ``CLM__SERVING__*`` overrides."""
    from clm_lib.config import load_config

    environ = {
        "CLM_HOME": str(home),
        "MLFLOW_TRACKING_URI": registry["tracking_uri"],
        "CLM__MODEL__BASE_PATH": str(registry["base"]),
        "CLM__SERVING__ROUTER_PORT": str(free_port()),
        "CLM__SERVING__BLUE_PORT": str(free_port()),
        "CLM__SERVING__GREEN_PORT": str(free_port()),
        "CLM__SERVING__DEVICE": "cpu",
    }
    environ |= {f"CLM__SERVING__{k.upper()}": v for k, v in overrides.items()}
    return load_config(TINY, environ=environ)


class running:
    """Serve an ASGI app with uvicorn in a thread on a free loopback port: ``with running(app) as url: ...``."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))

    def __enter__(self) -> str:
        import threading
        import time

        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        self.sock.close()
