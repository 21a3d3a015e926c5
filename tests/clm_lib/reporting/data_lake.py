"""A small real lake for the data screens' tests: files ingested through the real path (reader, GX suite, dedupe,
Delta appends, clm's database), a review-queue correction, and optionally training runs and replay versions.

Imported by the reporting, REST and view tests (``from tests.clm_lib.reporting.data_lake import build_lake``).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clm_lib.config import REPO_ROOT, ClmConfig, load_config
from clm_lib.data.ingest import BatchResult, ingest_file
from clm_lib.db import session_scope, upgrade

HOSTILE = "<script>alert(1)</script>\u202egnp.exe\u0000 and more"
"""A prompt no screen may render as markup (a script tag, a right-to-left override, a NUL)."""
LONG_PROMPT = "y" * 3000
"""Over the suite's 2000-character prompt limit: quarantined as ``prompt_too_long``."""


def _record(i: int, task: str = "routers", **extra: Any) -> dict[str, Any]:
    return {
        "task": task,
        "prompt": f"My router {i} drops the connection every evening, what can I do?",
        "response": f"Update the firmware and move it away from the microwave (ticket {i}).",
        **extra,
    }


def _write(path: Path, lines: list[Any]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


@dataclass
class Lake:
    cfg: ClmConfig
    files: BatchResult
    """``tickets.jsonl``: 4 curated (3 routers, 1 billing), 1 duplicate, 4 quarantined."""
    feedback: BatchResult
    """``feedback-blue-20261120.jsonl``: 2 curated (1 routers, 1 thermostats), 1 duplicate of the first file."""
    feedback_id: int
    """The review-queue correction put in quarantine (reason ``pending_review``)."""


def config(home: Path) -> ClmConfig:
    cfg = load_config(REPO_ROOT / "include" / "clm.yaml", environ={"CLM_HOME": str(home)})
    cfg.landing_dir.mkdir(parents=True, exist_ok=True)
    upgrade(cfg.database_url)
    return cfg


def build_lake(home: Path) -> Lake:
    cfg = config(home)
    files = ingest_file(cfg, _write(cfg.landing_dir / "tickets.jsonl", [
        _record(1), _record(2), _record(3, task="billing"), _record(4),
        _record(1),  # a repeat: duplicate
        "{not json",  # malformed_json
        {"task": "spaceships", "prompt": HOSTILE, "response": "Sure."},  # unknown_task
        {**_record(5), "prompt": LONG_PROMPT},  # prompt_too_long
        {**_record(6), "response": "   "},  # empty_response
    ]))  # fmt: skip
    feedback = ingest_file(cfg, _write(cfg.landing_dir / "feedback-blue-20261120.jsonl", [
        _record(7), _record(8, task="thermostats"), _record(2),
    ]))  # fmt: skip
    return Lake(cfg, files, feedback, add_correction(cfg))


def add_correction(cfg: ClmConfig) -> int:
    """A correction waiting in the review queue, quarantined as the serving slot does it."""
    from clm_lib.db.models import ServingFeedback
    from clm_lib.serving.review import PENDING, quarantine_correction

    with session_scope(cfg.database_url) as s:
        row = ServingFeedback(response_id="resp-1", slot="blue", model_version="3", task="routers", rating=0.0,
                              prompt="Is <b>this</b> right?", response="No.", correction="Yes, reboot it first.",
                              owner="alice", status=PENDING)  # fmt: skip
        s.add(row)
        s.flush()
        quarantine_correction(cfg, row)
        return row.id


def reasons(*results: BatchResult) -> Counter[str]:
    out: Counter[str] = Counter()
    for r in results:
        out.update(r.quarantine_reasons)
    return out
