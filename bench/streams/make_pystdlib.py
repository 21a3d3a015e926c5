"""Build bench/streams/pystdlib/: five short tasks derived mechanically from CPython's standard library.

Text no one on this project wrote, that every Python install carries under the PSF License: the language
reference topics ``help()`` shows (``pydoc_data.topics``), docstrings, signatures and source lines of stdlib
modules. Each task's answer is computed from that text, never typed by hand:

1. ``ref_topic``: a sentence of the language reference -> the ``help()`` topic it comes from (6 labels);
2. ``doc_module``: the first line of a docstring -> the module documented (6 labels);
3. ``name_kind``: a public dotted name -> ``function``, ``class``, ``exception`` or ``constant``;
4. ``param_count``: a function's signature -> how many parameters it takes;
5. ``first_keyword``: a line of stdlib source -> the first Python keyword on it.

Deterministic for a given CPython minor version (docstrings and sources change between versions; the one used is
in the README). Run from the repository root::

    .venv/bin/python bench/streams/make_pystdlib.py            # rewrites bench/streams/pystdlib/
"""

from __future__ import annotations

import csv
import importlib
import inspect
import io
import json
import keyword
import pydoc_data.topics
import random
import re
import sys
import tokenize
import types
from collections.abc import Callable, Iterable
from pathlib import Path

OUT = Path(__file__).resolve().parent / "pystdlib"
SEED = 20261207
N_TRAIN, N_TEST = 400, 100
MAX_PROMPT = 140
"""Characters: the benchmark's default model reads 96 tokens, and its tokenizer was trained on support tickets."""
BUILT_WITH = (3, 11)
MAX_CONSTANTS = 12
"""Per module, for ``name_kind``."""

Record = dict[str, str]

TOPICS = ("compound", "types", "formatstrings", "string-methods", "debugger", "specialnames")
DOC_MODULES = ("math", "statistics", "inspect", "typing", "ssl", "codecs")
KIND_MODULES = (
    "os",
    "socket",
    "ssl",
    "signal",
    "errno",
    "stat",
    "inspect",
    "typing",
    "shutil",
    "tarfile",
    "zipfile",
    "subprocess",
    "logging",
    "decimal",
    "email",
    "json",
    "collections",
    "http",
    "urllib",
    "xml",
)
SIGNATURE_MODULES = (
    "os",
    "shutil",
    "inspect",
    "typing",
    "json",
    "textwrap",
    "statistics",
    "difflib",
    "tarfile",
    "zipfile",
    "subprocess",
    "logging",
    "argparse",
    "functools",
    "itertools",
    "calendar",
    "csv",
    "tempfile",
    "glob",
    "base64",
    "urllib.parse",
    "email.utils",
    "gzip",
    "pathlib",
    "random",
)
SOURCE_MODULES = (
    "argparse",
    "shutil",
    "textwrap",
    "difflib",
    "tarfile",
    "zipfile",
    "configparser",
    "calendar",
    "pathlib",
    "tempfile",
    "csv",
    "json.decoder",
    "logging",
    "dataclasses",
    "fractions",
)


def _clean(text: str) -> str:
    return " ".join(text.split())


_HEADING = re.compile(r"^.*\n[=\-~^*]{3,}[ \t]*$", re.MULTILINE)


def ref_topic() -> Iterable[Record]:
    for topic in TOPICS:
        # Headings (a title over a line of ====) would run into the sentence after them.
        text = _HEADING.sub("", pydoc_data.topics.topics[topic])
        for sentence in re.split(r"(?<=[.!?])\s+", _clean(text)):
            if 40 <= len(sentence) <= MAX_PROMPT and sentence[0].isupper() and ">>>" not in sentence:
                yield {"prompt": sentence, "response": topic}


def _public(module: types.ModuleType) -> Iterable[tuple[str, object]]:
    for name in sorted(getattr(module, "__all__", None) or vars(module)):
        if not name.startswith("_") and hasattr(module, name):
            yield name, getattr(module, name)


def _defined_in(obj: object, module: types.ModuleType) -> bool:
    home = getattr(obj, "__module__", None) or ""
    return home.lstrip("_") == module.__name__ or home.startswith(module.__name__ + ".")


def doc_module() -> Iterable[Record]:
    for name in DOC_MODULES:
        module = importlib.import_module(name)
        owners = [obj for _, obj in _public(module) if _defined_in(obj, module)]
        # Methods of the module's own classes: the module's vocabulary, in more sentences than its functions give.
        owners += [m for c in owners if inspect.isclass(c) for n, m in sorted(vars(c).items()) if not n.startswith("_")]
        for obj in owners:
            doc = inspect.getdoc(obj) if callable(obj) or inspect.isclass(obj) else None
            first = _clean(doc.split("\n\n")[0]) if doc else ""
            # A builtin's docstring may open with its signature: the name would give the answer away.
            if 20 <= len(first) <= MAX_PROMPT and "(" not in first.split(" ")[0]:
                yield {"prompt": first, "response": name}


def _kind(obj: object) -> str | None:
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if inspect.isroutine(obj):
        return "function"
    if isinstance(obj, int | str | float | bytes) and not isinstance(obj, bool):
        return "constant"
    return None


def name_kind() -> Iterable[Record]:
    for name in KIND_MODULES:
        module = importlib.import_module(name)
        constants = 0
        for attr, obj in _public(module):
            kind = _kind(obj)
            # errno, stat and socket hold hundreds of constants: a few per module keep the labels in balance.
            constants += kind == "constant"
            if kind and (kind != "constant" or constants <= MAX_CONSTANTS):
                yield {"prompt": f"{name}.{attr}", "response": kind}


class _Opaque:
    def __repr__(self) -> str:
        return "..."


def _stable(signature: inspect.Signature) -> inspect.Signature:
    """The signature with defaults whose text changes from run to run (addresses, set order) shown as ``...``."""
    params = []
    for p in signature.parameters.values():
        unstable = p.default is not p.empty and (" at 0x" in repr(p.default) or isinstance(p.default, set | frozenset))
        params.append(p.replace(default=_Opaque()) if unstable else p)
    return signature.replace(parameters=params)


def param_count() -> Iterable[Record]:
    for name in SIGNATURE_MODULES:
        module = importlib.import_module(name)
        for attr, obj in _public(module):
            if not (inspect.isfunction(obj) or inspect.isbuiltin(obj)):
                continue
            try:
                signature = inspect.signature(obj)
            except (TypeError, ValueError):
                continue
            prompt = f"{name}.{attr}{_stable(signature)}"
            if len(prompt) <= MAX_PROMPT:
                yield {"prompt": prompt, "response": str(len(signature.parameters))}


_VALUES = {"True", "False", "None"}
"""Keywords that are values, not statements: left out, so every answer is a statement or operator keyword."""


def _source_lines(source: str) -> Iterable[tuple[str, str]]:
    """(line, first keyword on it) for each line that starts a statement: tokens, so lines inside strings, comments
    and brackets never count."""
    lines = source.splitlines()
    keywords: dict[int, str] = {}
    starts: set[int] = set()
    at_start = True
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NEWLINE:
            at_start = True
            continue
        if tok.type in (tokenize.NL, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT):
            continue
        row = tok.start[0]
        if at_start:
            starts.add(row)
            at_start = False
        if tok.type == tokenize.NAME and keyword.iskeyword(tok.string) and tok.string not in _VALUES:
            keywords.setdefault(row, tok.string)
    for row, found in keywords.items():
        if row in starts:
            yield lines[row - 1].strip(), found


def first_keyword() -> Iterable[Record]:
    for name in SOURCE_MODULES:
        for line, found in _source_lines(inspect.getsource(importlib.import_module(name))):
            if 20 <= len(line) <= MAX_PROMPT:
                yield {"prompt": line, "response": found}


TASKS: dict[str, tuple[Callable[[], Iterable[Record]], str]] = {
    "ref_topic": (ref_topic, "jsonl"),
    "doc_module": (doc_module, "jsonl"),
    "name_kind": (name_kind, "csv"),
    "param_count": (param_count, "jsonl"),
    "first_keyword": (first_keyword, "csv"),
}
"""Arrival order, and the format each task ships in (two formats, so the stream also exercises both readers)."""


def split(records: Iterable[Record], rng: random.Random) -> tuple[list[Record], list[Record]]:
    """Distinct prompts only (one answer each), shuffled, cut into at most N_TRAIN / N_TEST, test 1/5 when short."""
    answers: dict[str, set[str]] = {}
    for r in records:
        answers.setdefault(r["prompt"], set()).add(r["response"])
    unique = [{"prompt": p, "response": a.pop()} for p, a in sorted(answers.items()) if len(a) == 1]
    rng.shuffle(unique)
    n_test = min(N_TEST, len(unique) // 5)
    return unique[n_test : n_test + N_TRAIN], unique[:n_test]


def write(path: Path, records: list[Record], fmt: str) -> None:
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
        return
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["prompt", "response"])
        writer.writeheader()
        writer.writerows(records)


def main() -> int:
    if sys.version_info[:2] != BUILT_WITH:
        print(
            f"warning: the shipped stream was built with Python {BUILT_WITH[0]}.{BUILT_WITH[1]}; this one's stdlib "
            "text differs, so the files will too",
            file=sys.stderr,
        )
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*_*.t*.*"):
        old.unlink()
    for number, (task, (make, fmt)) in enumerate(TASKS.items(), 1):
        train, test = split(make(), random.Random(f"{SEED}/{task}"))
        for part, records in (("train", train), ("test", test)):
            write(OUT / f"{number:02d}_{task}.{part}.{fmt}", records, fmt)
        labels = sorted({r["response"] for r in train})
        print(f"{number:02d}_{task}: {len(train)} train, {len(test)} test, {len(labels)} answers")
    return 0


if __name__ == "__main__":
    sys.exit(main())
