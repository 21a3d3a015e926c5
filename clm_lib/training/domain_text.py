"""Unlabelled in-domain text for domain adaptation: a folder of ``.txt``, ``.md`` and ``.jsonl`` files, checked.

The folder is untrusted input (DESIGN.md, trust boundaries): a symlink leading outside it is refused, as is a file
that is not UTF-8 text (a NUL byte or an invalid sequence means binary) or larger than
``training.domain.max_file_bytes``. ``.txt`` and ``.md`` files are one document each; a ``.jsonl`` file holds one
document per line, in its ``text`` field. Files with other extensions and hidden files are skipped, and listed, so
a user sees what was left out. Every error names the file (and line) at fault.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from clm_lib.errors import TrainingError

TEXT_SUFFIXES = (".txt", ".md", ".jsonl")


@dataclass(frozen=True)
class TextSource:
    """One file read, for the record: where it is, what it held."""

    path: str
    """Relative to the folder."""
    sha256: str
    bytes: int
    documents: int


@dataclass
class DomainText:
    """The documents of a text folder and where they came from."""

    folder: Path
    documents: list[str] = field(default_factory=list)
    sources: list[TextSource] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """Files left out (other extensions, hidden), relative to the folder."""


def read_text_folder(folder: str | Path, *, max_file_bytes: int) -> DomainText:
    """Every document under ``folder`` (recursively, in sorted path order); raises :class:`TrainingError` naming the
    problem when the folder cannot be used as it is."""
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise TrainingError(f"--text {folder}: no such folder")
    if not folder.is_dir():
        raise TrainingError(f"--text {folder}: not a folder")
    root = folder.resolve()
    out = DomainText(folder=root)
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in path.relative_to(folder).parts):
            out.skipped.append(rel)
            continue
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(root):
                raise TrainingError(f"{path}: a symlink to {target}, outside {root}; copy the file in instead")
        if path.is_dir():
            continue
        if path.suffix.lower() not in TEXT_SUFFIXES:
            out.skipped.append(rel)
            continue
        if not path.is_file():
            raise TrainingError(f"{path}: not a regular file")
        docs, source = _read_file(path, rel, max_file_bytes)
        out.documents.extend(docs)
        out.sources.append(source)
    if not out.sources:
        left = f" (skipped: {', '.join(out.skipped[:5])}{'...' if len(out.skipped) > 5 else ''})" if out.skipped else ""
        raise TrainingError(f"--text {folder}: no .txt, .md or .jsonl files{left}")
    if not out.documents:
        raise TrainingError(f"--text {folder}: its {len(out.sources)} text file(s) hold no text")
    return out


def _read_file(path: Path, rel: str, max_file_bytes: int) -> tuple[list[str], TextSource]:
    try:
        size = path.stat().st_size
        if size > max_file_bytes:
            raise TrainingError(
                f"{path}: {size} bytes, over training.domain.max_file_bytes ({max_file_bytes}); split it"
            )
        with open(path, "rb") as fh:
            raw = fh.read(max_file_bytes + 1)
    except OSError as exc:
        raise TrainingError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    if b"\0" in raw:
        raise TrainingError(f"{path}: a binary file (it holds NUL bytes), not text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TrainingError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    whole = [text.strip()] if text.strip() else []
    docs = _jsonl_documents(path, text) if path.suffix.lower() == ".jsonl" else whole
    return docs, TextSource(rel, hashlib.sha256(raw).hexdigest(), len(raw), len(docs))


def _jsonl_documents(path: Path, text: str) -> list[str]:
    docs = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TrainingError(f"{path} line {number}: not JSON ({exc.msg})") from None
        value = row.get("text") if isinstance(row, dict) else None
        if not isinstance(value, str):
            raise TrainingError(f'{path} line {number}: no "text" string field')
        if value.strip():
            docs.append(value.strip())
    return docs
