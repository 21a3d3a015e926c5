"""The Model registry screen's data: every version with what made it, the alias history against MLflow, lineage
graphs and comparisons, read from a real clm database and a real MLflow registry (SQLite stores)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from clm_lib.config import load_config
from clm_lib.db import session_scope, upgrade
from clm_lib.db.models import IngestionBatch
from clm_lib.reporting import lineage, registry
from clm_lib.reporting.report import UnknownVersion
from tests.clm_lib.reporting.registry_history import HOSTILE, LEAKED, register_in_mlflow, seed_lineage

REPO = Path(__file__).resolve().parents[3]


def _cfg(home: Path, db_url: str | None = None, tracking_uri: str | None = None):
    env = {"CLM_HOME": str(home)}
    if db_url:
        env["CLM__DATABASE__URL"] = db_url
    if tracking_uri:
        env["CLM__REGISTRY__TRACKING_URI"] = tracking_uri
    return load_config(REPO / "include" / "clm.yaml", environ=env)


@pytest.fixture
def cfg(tmp_path, mlflow_uri, clean_env):
    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    seed_lineage(url)
    register_in_mlflow(mlflow_uri)
    return _cfg(tmp_path / "home", url, mlflow_uri)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_every_version_newest_first_with_what_made_it(cfg):
    page, state = registry.list_versions(cfg)

    assert state.status == "ok" and page.total == 3
    assert [v.version for v in page.items] == ["3", "2", "1"]
    v3, v2, v1 = page.items
    # v3 was registered in MLflow by hand: listed, with nothing clm recorded
    assert (v3.in_registry, v3.run, v3.scores, v3.gate, v3.aliases) == (True, None, {}, None, ["challenger"])
    assert v2.aliases == ["champion"] and v2.in_registry and v2.registered_at is not None
    assert (v2.run.training_run_id, v2.run.parent_model_version, v2.run.config_hash) == ("tr-2", "1", "cfg-b")
    assert (v2.run.previous_curated_version, v2.run.curated_version, v2.run.replay_version) == (1, 3, 4)
    assert v2.params == {"new_rows": 350, "replay_rows": 120, "strategy.replay.ratio": 0.3, "strategy.ewc.lambda": 10.0}
    assert v2.scores == {"routers": 88.0, "billing": 90.5, "thermostats": 93.0}
    assert (v2.average_accuracy, v2.backward_transfer, v2.trigger) == (90.5, -3.0, "asset")
    assert v2.gate.passed and v2.gate.champion_version == "1"  # not another model's decision on "2"
    assert v1.aliases == ["previous"] and v1.backward_transfer is None and v1.trigger == "manual"
    assert v2.mark is None and v1.mark is None  # v2's rollback was undone by the promotion after it

    second, _ = registry.list_versions(cfg, offset=1, limit=1)
    assert ([v.version for v in second.items], second.total, second.offset) == (["2"], 3, 1)


def test_lineage_goes_from_the_batches_to_the_deployments(cfg):
    g = lineage.lineage_of(cfg, "2")

    assert g.training_run_id == "tr-2" and not g.notes and not g.omitted
    assert {n.key for n in g.of_kind("batch")} == {"b-2", "b-3"}  # not b-1 (before v1), b-dup, b-bad
    assert [n.key for n in g.of_kind("curated")] == ["3", "2"]
    assert [n.key for n in g.of_kind("replay")] == ["4"] and [n.key for n in g.of_kind("parent")] == ["1"]
    assert [n.key for n in g.of_kind("deployment")] == ["3", "2"]
    assert {(n.key, n.status) for n in g.of_kind("deployment")} == {("3", "promoted"), ("2", "rolled_back")}
    for batch in ("batch:b-2", "batch:b-3"):
        assert g.reaches(batch, "run:tr-2") and g.reaches(batch, "model:2") and g.reaches(batch, "deployment:3")
    assert g.reaches("replay:4", "model:2") and g.reaches("parent:1", "deployment:2")
    assert not g.reaches("model:2", "batch:b-2")
    model = next(n for n in g.nodes if n.id == "model:2")
    assert model.detail == "champion · gate passed" and model.status == "passed"
    labels = {(e.source, e.target): e.label for e in g.edges}
    assert labels[("batch:b-3", "curated:3")] == "committed" and labels[("run:tr-2", "model:2")] == "registered"
    assert labels[("parent:1", "run:tr-2")] == "fine-tuned from" and labels[("model:2", "deployment:3")] == "promotion"
    assert g.as_dict()["nodes"][0]["at"].startswith("2026-11-21")

    first = lineage.lineage_of(cfg, "1")
    assert [n.key for n in first.of_kind("batch")] == ["b-1"] and not first.of_kind("parent")
    assert first.reaches("batch:b-1", "deployment:1")


def test_a_version_without_a_run_and_unknown_versions(cfg):
    by_hand = lineage.lineage_of(cfg, "3")
    assert [n.id for n in by_hand.nodes] == ["model:3"] and "registered in MLflow without" in by_hand.notes[0]

    for bad in ("99", "abc", "1; drop table"):
        with pytest.raises(UnknownVersion):
            lineage.lineage_of(cfg, bad)
        with pytest.raises(UnknownVersion):
            registry.get_version(cfg, bad)


def test_batches_past_the_cap_are_one_node(cfg):
    with session_scope(cfg.database_url) as s:
        s.add_all(IngestionBatch(id=f"x-{i:02d}", source=f"landing/x{i}.jsonl", source_format="jsonl",
                                 file_sha256="f" * 64, status="committed", rows_in=1, rows_curated=1,
                                 curated_version=2) for i in range(lineage.MAX_PER_STAGE + 3))  # fmt: skip

    g = lineage.lineage_of(cfg, "2")

    assert len(g.of_kind("batch")) == lineage.MAX_PER_STAGE and g.omitted == {"batch": 5}
    more = next(n for n in g.nodes if n.id == "more:batch")
    assert more.label == "+5 earlier batches" and g.reaches("more:batch", "model:2")


def test_the_drawing_fits_its_box_and_keeps_hostile_names_as_text(cfg):
    g = lineage.lineage_of(cfg, "2")
    d = lineage.layout(g)

    assert [c.stage for c in d.columns] == list(lineage.STAGES)
    assert len(d.boxes) == len(g.nodes) and len(d.links) == len(g.edges)
    for b in d.boxes:
        assert b.x >= 0 and b.x + d.box_w <= d.width and b.y >= 0 and b.y + d.box_h <= d.height
        assert len(b.label) <= lineage.LABEL_CHARS + 1
    assert sum(b.current for b in d.boxes) == 1
    hostile = next(b for b in d.boxes if b.node.key == "b-3")
    assert hostile.node.label == HOSTILE and hostile.label == HOSTILE[: lineage.LABEL_CHARS] + "…"


def test_alias_history_is_the_audit_log_and_is_checked_against_mlflow(cfg):
    everything = registry.alias_history(cfg)
    champion = registry.alias_history(cfg, alias="champion")
    otto = registry.alias_history(cfg, actor="otto", limit=2)

    assert everything.total == 6  # not the other model's move, not the deployment entry
    assert [(m.alias, m.from_version, m.to_version) for m in everything.items][:2] == [
        ("challenger", "2", None), ("previous", None, "1")
    ]  # fmt: skip
    assert [(m.actor, m.to_version, m.reason) for m in champion.items] == [
        ("airflow:Otto", "2", "promoted after the second canary"),
        ("airflow:ada", "1", "gate passed; bake window clean"),
    ]  # fmt: skip
    assert (otto.total, len(otto.items)) == (3, 2)
    assert registry.alias_history(cfg, version="1").total == 5

    page = registry.build_registry(cfg)
    now = {a.alias: a for a in page.aliases}
    assert list(now) == ["champion", "previous", "challenger"]
    assert (now["champion"].version, now["champion"].agrees, now["champion"].last_move.actor) == ("2", True,
                                                                                                "airflow:Otto")
    # challenger: deleted per the audit log, but MLflow points it at 3 (moved around clm)
    assert (now["challenger"].version, now["challenger"].last_move.to_version, now["challenger"].agrees) == (
        "3", None, False)  # fmt: skip


def test_compare_two_versions_scores_and_config_diff(cfg):
    c = registry.compare(cfg, "1", "2")

    assert [(t.task, t.a, t.b, t.delta) for t in c.tasks] == [
        ("routers", 91.0, 88.0, -3.0), ("billing", None, 90.5, None), ("thermostats", None, 93.0, None)
    ]  # fmt: skip
    changes = {ch.key: ch for ch in c.config}
    assert set(changes) == {"training.learning_rate", "training.ewc_lambda", "data.tasks", "registry.tracking_uri"}
    assert (changes["training.learning_rate"].a, changes["training.learning_rate"].b) == (0.001, 0.0005)
    assert changes["training.ewc_lambda"].only_in == "b" and changes["training.ewc_lambda"].a is None
    assert "hunter2" not in str(changes["registry.tracking_uri"].b) and LEAKED not in repr(c)
    assert {p.key for p in c.params} == {"new_rows", "replay_rows", "strategy.replay.ratio", "strategy.ewc.lambda"}
    assert c.config_missing == []

    with_by_hand = registry.compare(cfg, "2", "3")
    assert with_by_hand.config == [] and with_by_hand.config_missing == ["3"]
    assert registry.compare(cfg, "2", "2").config == []
    with pytest.raises(UnknownVersion):
        registry.compare(cfg, "2", "42")


def test_compare_defaults_to_the_two_newest_and_refuses_bad_arguments(cfg):
    c = registry.build_compare(cfg, {}).comparison
    assert (c.a.version, c.b.version) == ("2", "3")
    assert registry.build_compare(cfg, {"b": "v1"}).comparison.a.version == "3"
    bad = registry.build_compare(cfg, {"a": "latest", "b": "2"})
    assert (bad.status, bad.bad_filter.field, bad.comparison, bad.a) == (422, "a", None, "latest")


def test_fresh_install_and_dead_mlflow_are_states_not_errors(tmp_path, clean_env):
    fresh = _cfg(tmp_path / "home")
    page = registry.build_registry(fresh)
    assert page.status == 200 and page.versions.total == 0 and page.history.total == 0 and not page.problems
    assert registry.build_compare(fresh, {}).comparison is None
    with pytest.raises(UnknownVersion):
        lineage.lineage_of(fresh, "1")
    assert not (tmp_path / "home" / "clm.db").exists()

    url = f"sqlite:///{tmp_path / 'clm.db'}"
    upgrade(url)
    seed_lineage(url)
    dead = _cfg(tmp_path / "home", url, f"http://u:s3cret@127.0.0.1:{_closed_port()}")
    page = registry.build_registry(dead)
    assert page.registry_status == "unreachable" and "s3cret" not in page.registry_message
    assert [v.version for v in page.versions.items] == ["2", "1"]
    assert page.versions.items[0].in_registry is None and page.versions.items[0].aliases == []
    assert {a.alias: a.agrees for a in page.aliases} == {"champion": None, "previous": None, "challenger": None}
    assert lineage.lineage_of(dead, "2").reaches("batch:b-2", "deployment:3")


def test_bad_screen_arguments_are_a_422_naming_the_field(cfg):
    page = registry.build_registry(cfg, {"offset": "-1"})
    assert (page.status, page.bad_filter.field) == (422, "offset")
    assert registry.build_registry(cfg, {"actor": "x" * 300}).bad_filter.field == "actor"


def test_lineage_of_batches_ingested_for_real_matches_the_delta_history(tmp_path, clean_env):
    """Through the real ingest path: each batch's recorded curated version is the Delta commit the Data versions
    screen attributes to it, and a run that read up to the latest version is fed by both batches."""
    from clm_lib.data import lake as delta
    from clm_lib.db.models import TrainingRun
    from clm_lib.reporting.data_versions import table_history
    from tests.clm_lib.reporting.data_lake import build_lake

    built = build_lake(tmp_path / "home")
    cfg = built.cfg
    latest = delta.table_version(cfg, "curated")
    with session_scope(cfg.database_url) as s:
        s.add(TrainingRun(id="tr-real", status="succeeded", model_version="1", base_model="b", config_hash="h",
                          curated_version=latest, previous_curated_version=None, tasks=["routers"]))  # fmt: skip

    g = lineage.lineage_of(cfg, "1")

    fed = {n.key: n for n in g.of_kind("batch")}
    assert set(fed) == {built.files.batch_id, built.feedback.batch_id}
    commits = {c.version: c.batches for c in table_history(cfg, "curated").commits}
    for result in (built.files, built.feedback):
        assert g.reaches(f"batch:{result.batch_id}", f"curated:{result.curated_version}")
        assert result.batch_id in commits[result.curated_version]
        assert g.reaches(f"batch:{result.batch_id}", "model:1")
