"""The rules of the production images (docker/README.md), checked on the Dockerfiles and the manifests that run them:
no Docker engine runs here, so no image is built, and these checks are what stands between an edit and a broken rule.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile.*"))
IMAGE_UID = 10001
"""The user of the trainer and serving images, and the one the manifests in include/k8s/ run as."""


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_there_is_an_image_for_airflow_the_trainer_and_serving():
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.airflow", "Dockerfile.trainer", "Dockerfile.serving"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_an_image_pins_its_base_installs_by_the_constraints_and_runs_as_non_root(dockerfile):
    steps = _instructions(dockerfile)
    bases = [args for op, args in steps if op == "FROM"]
    assert bases and all(re.fullmatch(r"[\w./-]+:[\w.-]+", b) and not b.endswith(":latest") for b in bases), bases
    installs = [cmd for op, args in steps if op == "RUN" for cmd in args.split("&&") if "pip install" in cmd]
    assert installs, "an image without clm installed"
    assert all("-c /opt/clm/constraints.txt" in cmd for cmd in installs), installs
    users = [args for op, args in steps if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users


@pytest.mark.parametrize("name", ["Dockerfile.trainer", "Dockerfile.serving"])
def test_the_pod_images_run_as_the_uid_the_manifests_ask_for(name):
    steps = _instructions(REPO / "docker" / name)
    assert [args for op, args in steps if op == "USER"][-1] == f"{IMAGE_UID}:{IMAGE_UID}"
    assert any(f"--uid {IMAGE_UID}" in args for op, args in steps if op == "RUN")
    for manifest in (REPO / "include" / "k8s").glob("*.yaml"):
        for doc in yaml.safe_load_all(manifest.read_text()):
            if doc and doc["kind"] in ("Pod", "Deployment"):
                spec = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
                ctx = spec["securityContext"]
                assert (ctx["runAsNonRoot"], ctx["runAsUser"], ctx["runAsGroup"]) == (True, IMAGE_UID, IMAGE_UID)


def test_the_trainer_ships_deepspeed_ops_compiled_for_the_gpus_it_targets():
    run = " ".join(args for op, args in _instructions(REPO / "docker" / "Dockerfile.trainer") if op == "RUN")
    assert "DS_BUILD_FUSED_ADAM=1" in run and "TORCH_CUDA_ARCH_LIST=" in run
    assert "--no-build-isolation" in run  # DeepSpeed's build must see the CUDA torch installed before it
