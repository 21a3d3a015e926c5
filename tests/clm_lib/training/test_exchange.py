"""The exchange location between the training task and its pod (``clm_lib/training/exchange.py``), on a local folder
and on moto's real S3 HTTP server on loopback (started and stopped here); and the spec's checkpoint copy on both."""

from __future__ import annotations

import pytest

from clm_lib.training import exchange
from clm_lib.training.loop import STATE_FILE, latest_checkpoint
from clm_lib.training.spec import TrainingSpec, _mirror_checkpoints, read_spec, write_spec
from tests.s3 import use_s3

BUCKET = "clm-training"


@pytest.fixture(params=["folder", "s3"])
def root(request, tmp_path, monkeypatch):
    if request.param == "folder":
        yield str(tmp_path / "exchange")
        return
    with use_s3(monkeypatch, request.getfixturevalue("s3_endpoint"), BUCKET):
        yield f"s3://{BUCKET}/training"


def test_files_and_folders_round_trip(root, tmp_path):
    spec = TrainingSpec(run_id="run-1", curated_version=3, output_uri=exchange.join(root, "run-1", "output"))
    write_spec(exchange.join(root, "run-1", "spec.json"), spec)
    assert read_spec(exchange.join(root, "run-1", "spec.json")) == spec

    folder = tmp_path / "adapter"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"a")
    (folder / "sub" / "b.json").write_text("{}")
    target = exchange.join(root, "run-1", "adapter")
    assert not exchange.exists(target)
    exchange.upload_dir(folder, target)
    assert exchange.exists(target) and sorted(exchange.list_dir(target)) == ["a.bin", "sub/b.json"]
    exchange.download_dir(target, tmp_path / "back")
    assert (tmp_path / "back" / "sub" / "b.json").read_text() == "{}"
    exchange.remove_dir(target)
    assert exchange.list_dir(target) == []


def test_each_checkpoint_is_copied_and_older_copies_dropped(root, tmp_path):
    uri = exchange.join(root, "run-1", "checkpoints")
    copy = _mirror_checkpoints(uri)
    for step in (4, 8):
        checkpoint = tmp_path / "out" / f"step-{step:06d}"
        checkpoint.mkdir(parents=True)
        (checkpoint / "adapter_model.safetensors").write_bytes(b"w")
        (checkpoint / STATE_FILE).write_bytes(b"s")
        copy(checkpoint)
    assert sorted(exchange.list_dir(uri)) == ["step-000008/adapter_model.safetensors", f"step-000008/{STATE_FILE}"]
    exchange.download_dir(uri, tmp_path / "fresh-pod")
    assert latest_checkpoint(tmp_path / "fresh-pod").name == "step-000008"
