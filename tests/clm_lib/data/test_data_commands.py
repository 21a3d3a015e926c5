"""``clm data``: history, diff, restore, optimize and vacuum from the shell, on a real lake."""

import getpass
import json

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from clm_lib.cli import cli
from clm_lib.config import REPO_ROOT
from clm_lib.data import lake
from clm_lib.data.ingest import ingest_file
from clm_lib.db import session_scope
from clm_lib.db.models import AuditEntry


@pytest.fixture
def env(lake_cfg):
    return {"CLM_HOME": str(lake_cfg.home), "CLM_CONFIG": str(REPO_ROOT / "include" / "clm.yaml")}


@pytest.fixture
def two_batches(lake_cfg, record, write_jsonl):
    ingest_file(lake_cfg, write_jsonl(lake_cfg.landing_dir / "a.jsonl", [record(i) for i in range(4)]))
    ingest_file(lake_cfg, write_jsonl(lake_cfg.landing_dir / "b.jsonl",
                                      [record(i, task="billing") for i in range(4, 7)]))  # fmt: skip
    return lake_cfg


def _run(env, *args):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_history_and_diff(env, two_batches):
    out = _run(env, "data", "history", "curated")
    assert out.exit_code == 0 and out.output.splitlines()[0].startswith("v1 ") and "v0 " in out.output
    as_json = json.loads(_run(env, "data", "history", "curated", "--limit", "1", "--json").output)
    assert [c["version"] for c in as_json["commits"]] == [1] and as_json["latest"] == 1
    diff = _run(env, "data", "diff", "curated", "0", "1")
    assert "curated v0 -> v1: +3 -0 rows" in diff.output and "billing" in diff.output
    d = json.loads(_run(env, "data", "diff", "curated", "1", "0", "--json").output)
    assert (d["added"], d["removed"], d["tasks"]) == (0, 3, [{"task": "billing", "added": 0, "removed": 3}])


def test_restore_is_audited_as_the_os_user_and_unknown_versions_are_named(env, two_batches):
    out = _run(env, "data", "restore", "curated", "0", "--reason", "billing batch was wrong")
    assert out.exit_code == 0 and "restored version 0 as version 2 (was 1" in out.output
    assert lake.read_table(two_batches, "curated").num_rows == 4
    with session_scope(two_batches.database_url) as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "data.restored")).one()
    assert entry.actor == f"cli:{getpass.getuser()}" and entry.reason == "billing batch was wrong"
    bad = _run(env, "data", "restore", "curated", "9", "--reason", "x")
    assert bad.exit_code == 2 and "'curated' has no version 9 (versions 0 to 2)" in bad.output
    assert _run(env, "data", "restore", "curated", "0").exit_code == 2  # --reason is required
    unknown = _run(env, "data", "history", "nope")
    assert unknown.exit_code == 2 and "'nope'" in unknown.output


def test_optimize_and_vacuum(env, two_batches):
    out = _run(env, "data", "optimize", "curated")
    assert out.exit_code == 0 and "version 2: 2 file(s) compacted into 1" in out.output
    dry = _run(env | {"CLM__LAKE__VACUUM_RETENTION_HOURS": "0"}, "data", "vacuum", "curated", "--dry-run")
    assert "would delete 2 file(s) (retention 0 h)" in dry.output
    assert lake.read_table(two_batches, "curated", version=0).num_rows == 4  # a dry run deleted nothing
    result = json.loads(_run(env, "data", "vacuum", "curated", "--json").output)
    assert (result["retention_hours"], result["removed"], result["dry_run"]) == (168, [], False)
