"""``clm adapt-domain``: a run end to end, and bad input refused with a message naming the problem."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from clm_lib.cli import cli
from clm_lib.config import load_config
from clm_lib.demo.stream import generate_task, write_records
from clm_lib.evaluation.domain_comparison import COMPARISON_FILE
from clm_lib.reporting.domain import domain_adaptations

from .test_domain import write_text


@pytest.fixture
def env(tiny_clm_env) -> dict[str, str]:
    return tiny_clm_env(CLM__TRAINING__DOMAIN__MAX_STEPS="6", CLM__TRAINING__DOMAIN__CHUNK_TOKENS="64")


def _clm(*args: str, env: dict[str, str]):
    return CliRunner().invoke(cli, list(args), env=env)


def test_adapt_then_compare(tmp_path, env):
    text = write_text(tmp_path / "text")
    original = write_records(tmp_path / "original.jsonl", generate_task("routers", 12, 5, heldout=True), "jsonl")
    new = tmp_path / "new.jsonl"
    new.write_text("".join(json.dumps({"task": "pydoc", "prompt": f"topic {i}?", "response": "compound"}) + "\n"
                           for i in range(6)))  # fmt: skip
    args = ["adapt-domain", "--text", str(text), "--reason", "docs arrived"]
    result = _clm(*args, "--original", str(original), "--new", str(new), env=env)
    assert result.exit_code == 0, result.output
    assert "trained 6 steps" in result.output and "held-out text loss" in result.output
    # No --out: under <models>/domain, where the Continual strategy screen finds it.
    [found] = domain_adaptations(load_config()).adaptations
    out = Path(found.base_after)
    assert out.parent == Path(env["CLM_HOME"]) / "models" / "domain" and (out / "config.json").is_file()
    stored = json.loads((out / COMPARISON_FILE).read_text())
    groups = {t["task"]: t["group"] for t in stored["tasks"]}
    assert groups == {"routers": "original", "pydoc": "new"}
    assert set(stored["mean_change"]) == {"original", "new"}
    assert json.loads((out / "clm_domain.json").read_text())["reason"] == "docs arrived"


def _error(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    return result.output


def test_a_missing_folder(tmp_path, env):
    assert "no such folder" in _error(_clm("adapt-domain", "--text", str(tmp_path / "nope"), env=env))


def test_an_empty_folder(tmp_path, env):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "image.png").write_bytes(b"\x89PNG")
    out = _error(_clm("adapt-domain", "--text", str(tmp_path / "empty"), env=env))
    assert "no .txt, .md or .jsonl files" in out and "image.png" in out


def test_a_binary_file(tmp_path, env):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "data.txt").write_bytes(b"hello\0world")
    assert "binary file" in _error(_clm("adapt-domain", "--text", str(tmp_path / "t"), env=env))


def test_a_file_that_is_not_utf8(tmp_path, env):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "latin.md").write_bytes("caf\xe9".encode("latin-1"))
    out = _error(_clm("adapt-domain", "--text", str(tmp_path / "t"), env=env))
    assert "latin.md" in out and "not UTF-8" in out


def test_an_unreadable_file(tmp_path, env, monkeypatch):
    from clm_lib.training import domain_text

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "secret.txt").write_text("x")

    def refuse(path, *args, **kwargs):  # what chmod 0 does to anyone but root (the tests may run as root)
        if Path(path).name == "secret.txt":
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(domain_text, "open", refuse, raising=False)
    out = _error(_clm("adapt-domain", "--text", str(tmp_path / "t"), env=env))
    assert "secret.txt: cannot read it: Permission denied" in out


def test_a_named_pipe(tmp_path, env):
    (tmp_path / "t").mkdir()
    os.mkfifo(tmp_path / "t" / "pipe.txt")  # reading it would block forever
    assert "not a regular file" in _error(_clm("adapt-domain", "--text", str(tmp_path / "t"), env=env))


def test_a_symlink_outside_the_folder(tmp_path, env):
    (tmp_path / "t").mkdir()
    (tmp_path / "outside.txt").write_text("not yours")
    (tmp_path / "t" / "link.txt").symlink_to(tmp_path / "outside.txt")
    out = _error(_clm("adapt-domain", "--text", str(tmp_path / "t"), env=env))
    assert "symlink" in out and "outside" in out


def test_a_symlink_inside_the_folder_is_read(tmp_path):
    from clm_lib.training.domain_text import read_text_folder

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.txt").write_text("some text")
    (tmp_path / "t" / "b.txt").symlink_to(tmp_path / "t" / "a.txt")
    assert read_text_folder(tmp_path / "t", max_file_bytes=100).documents == ["some text", "some text"]


def test_a_jsonl_line_without_text(tmp_path, env):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "docs.jsonl").write_text('{"text": "fine"}\n{"body": "wrong field"}\n')
    out = _error(_clm("adapt-domain", "--text", str(tmp_path / "t"), env=env))
    assert "docs.jsonl line 2" in out and '"text"' in out


def test_files_without_text(tmp_path, env):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "blank.txt").write_text("  \n\n")
    assert "hold no text" in _error(_clm("adapt-domain", "--text", str(tmp_path / "t"), env=env))


def test_a_file_over_the_size_limit(tmp_path, env):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "big.txt").write_text("x" * 100)
    env = {**env, "CLM__TRAINING__DOMAIN__MAX_FILE_BYTES": "10"}
    assert "max_file_bytes" in _error(_clm("adapt-domain", "--text", str(tmp_path / "t"), env=env))


def test_an_output_that_is_not_empty(tmp_path, env):
    text = write_text(tmp_path / "text")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep").write_text("x")
    args = ["adapt-domain", "--text", str(text), "--out", str(tmp_path / "out")]
    assert "not an empty folder" in _error(_clm(*args, env=env))
