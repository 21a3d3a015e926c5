"""Build bench/streams/pystdlib_then_unix/ (a 4-task stream that changes domain halfway) and its unlabelled text.

For the domain-adaptation benchmark (``clm bench continual --domain-text``): the first two tasks come from CPython's
standard library (copied from ``bench/streams/pystdlib``, built by ``make_pystdlib.py``), the last two from another
domain, the Unix system documentation of this machine (Debian's), text no one on this project wrote:

3. ``license_of``: a sentence of a license text in ``/usr/share/common-licenses`` -> which license (6 labels);
4. ``man_heading``: a line of a section-1 man page (``/usr/share/man/man1``) -> the heading it stands under
   (``DESCRIPTION``, ``OPTIONS``, ``SEE ALSO``, ``AUTHOR``, ``EXAMPLES``, ``ENVIRONMENT``).

``pystdlib_then_unix_text/`` is the later domain's unlabelled text, what domain adaptation reads: man pages the
tasks do not use (section 1 pages hashed out of the task set, sections 5 and 8) as plain text, and the
``/usr/share/doc/*/copyright`` files (license texts as packages quote them). No test prompt is in it: every line
that contains one is dropped, so adaptation can teach the domain's language, never a test example.

Deterministic for one machine's installed packages (the README records what was read). Run from the repository
root::

    .venv/bin/python bench/streams/make_pystdlib_then_unix.py
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
import shutil
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "pystdlib"
OUT = HERE / "pystdlib_then_unix"
TEXT = HERE / "pystdlib_then_unix_text"
SEED = 20261208
N_TRAIN, N_TEST = 400, 100
MIN_PROMPT, MAX_PROMPT = 30, 140
EARLY = ("01_ref_topic", "05_first_keyword")
LICENSES = ("GPL-3", "Apache-2.0", "MPL-2.0", "GFDL-1.3", "LGPL-2.1", "Artistic")
HEADINGS = ("DESCRIPTION", "OPTIONS", "SEE ALSO", "AUTHOR", "EXAMPLES", "ENVIRONMENT")
TEXT_BYTES = 700_000
"""Unlabelled text kept: about one pass of domain adaptation's default 200 steps x 16 chunks x 96 tokens."""

_ESCAPES = re.compile(r"\\f[BIRP1-4]|\\f\(..|\\f\[[^]]*\]|\\[&/,|^~:]|\\\*\(..|\\\*.|\\s[-+]?\d|\\\(..|\\\[[^]]*\]")


def plain(line: str) -> str:
    """A groff text line as plain text (font changes and special characters out, ``\\-`` as ``-``)."""
    line = line.replace("\\-", "-").replace("\\e", "\\").replace("\\(em", "--").replace("\\(aq", "'")
    return re.sub(r"\s+", " ", _ESCAPES.sub("", line)).strip()


def man_sections(path: Path) -> list[tuple[str, str]]:
    """(heading, text line) of a man page's text lines, in order."""
    try:
        source = gzip.decompress(path.read_bytes()).decode("utf-8")
    except (OSError, UnicodeDecodeError, EOFError):
        return []
    heading, out = "", []
    for raw in source.splitlines():
        if raw.startswith(".SH"):
            heading = plain(raw[3:]).strip('"').upper()
        elif raw and not raw.startswith((".", "'")):
            out.append((heading, plain(raw)))
    return out


def _page_in_tasks(path: Path) -> bool:
    return int(hashlib.sha256(path.name.encode()).hexdigest(), 16) % 2 == 0


def sentences(text: str) -> list[str]:
    flat = re.sub(r"\s+", " ", text)
    return [s.strip() for s in re.split(r"(?<=[.;:])\s+", flat)]


def split(records: list[dict[str, str]], rng: random.Random) -> tuple[list, list]:
    rng.shuffle(records)
    return records[N_TEST : N_TEST + N_TRAIN], records[:N_TEST]


def balanced(by_label: dict[str, list[str]], total: int, rng: random.Random) -> list[dict[str, str]]:
    """Up to ``total / labels`` distinct prompts per label, a prompt under two labels dropped."""
    owners = Counter(p for prompts in by_label.values() for p in set(prompts))
    out = []
    for label, prompts in by_label.items():
        unique = sorted({p for p in prompts if owners[p] == 1})
        rng.shuffle(unique)
        out += [{"prompt": p, "response": label} for p in unique[: total // len(by_label)]]
    return out


def license_task(rng: random.Random) -> list[dict[str, str]]:
    by_label = {}
    for name in LICENSES:
        text = (Path("/usr/share/common-licenses") / name).read_text(encoding="utf-8", errors="replace")
        by_label[name] = [s for s in sentences(text) if MIN_PROMPT <= len(s) <= MAX_PROMPT]
    return balanced(by_label, N_TRAIN + N_TEST, rng)


def man_task(pages: list[Path], rng: random.Random) -> list[dict[str, str]]:
    by_label: dict[str, list[str]] = {h: [] for h in HEADINGS}
    for page in pages:
        for heading, line in man_sections(page):
            if heading in by_label and MIN_PROMPT <= len(line) <= MAX_PROMPT:
                by_label[heading].append(line)
    return balanced(by_label, N_TRAIN + N_TEST, rng)


def write_jsonl(path: Path, rows: list[dict[str, str]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def main() -> None:
    rng = random.Random(SEED)
    shutil.rmtree(OUT, ignore_errors=True)
    shutil.rmtree(TEXT, ignore_errors=True)
    OUT.mkdir()
    TEXT.mkdir()
    for number, stem in enumerate(EARLY, 1):
        for src in SOURCE.glob(f"{stem}.*"):
            shutil.copy(src, OUT / src.name.replace(stem[:2], f"{number:02d}", 1))
    man1 = sorted(Path("/usr/share/man/man1").glob("*.1*.gz"))
    task_pages = [p for p in man1 if _page_in_tasks(p)]
    tests: list[str] = []
    for number, (task, records) in enumerate(
        (("license_of", license_task(rng)), ("man_heading", man_task(task_pages, rng))), len(EARLY) + 1
    ):
        train, test = split(records, rng)
        write_jsonl(OUT / f"{number:02d}_{task}.train.jsonl", train)
        write_jsonl(OUT / f"{number:02d}_{task}.test.jsonl", test)
        tests += [r["prompt"] for r in test]

    # The later domain's unlabelled text: never the task pages, never a line holding a test prompt.
    documents: list[tuple[str, str]] = []
    text_pages = [p for p in man1 if not _page_in_tasks(p)]
    text_pages += sorted(Path("/usr/share/man/man5").glob("*.gz")) + sorted(Path("/usr/share/man/man8").glob("*.gz"))
    for page in text_pages:
        lines = [line for _h, line in man_sections(page)]
        documents.append((f"man/{page.name}", "\n".join(lines)))
    for path in sorted(Path("/usr/share/doc").glob("*/copyright")):
        if path.stat().st_size < 200_000:  # the few huge ones (boost's) would be most of the text
            documents.append((f"copyright/{path.parent.name}", path.read_text(encoding="utf-8", errors="replace")))
    rng.shuffle(documents)
    kept, size, dropped = [], 0, 0
    probe = re.compile("|".join(re.escape(t[:60]) for t in tests))
    for name, text in documents:
        lines = []
        for line in text.splitlines():
            if probe.search(re.sub(r"\s+", " ", line)):
                dropped += 1
                continue
            lines.append(line)
        body = "\n".join(lines).strip()
        if len(body) < 200:
            continue
        kept.append({"source": name, "text": body})
        size += len(body.encode())
        if size >= TEXT_BYTES:
            break
    write_jsonl(TEXT / "unix_docs.jsonl", kept)
    readme = {
        "built_by": "bench/streams/make_pystdlib_then_unix.py",
        "seed": SEED,
        "early_tasks_from": "bench/streams/pystdlib",
        "task_pages": len(task_pages),
        "text_documents": len(kept),
        "text_bytes": size,
        "text_lines_dropped_for_holding_a_test_prompt": dropped,
        "licenses": {
            n: hashlib.sha256((Path("/usr/share/common-licenses") / n).read_bytes()).hexdigest() for n in LICENSES
        },
    }
    (OUT / "README.md").write_text(
        "# pystdlib_then_unix\n\nBuilt by `bench/streams/make_pystdlib_then_unix.py` (its docstring says how).\n\n"
        "```json\n" + json.dumps(readme, indent=2) + "\n```\n"
    )
    print(json.dumps(readme, indent=2))
    for path in sorted(OUT.glob("*.jsonl")):
        print(path.name, sum(1 for _ in path.open()))


if __name__ == "__main__":
    main()
