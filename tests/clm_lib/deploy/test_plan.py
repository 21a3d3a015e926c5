"""plan_rollback: where a rollback goes, from the deployment history alone (no database, no MLflow)."""

from __future__ import annotations

from datetime import UTC, datetime

from clm_lib.deploy.plan import Record, marks, plan_rollback

T = datetime(2026, 12, 1, tzinfo=UTC)


def promoted(i: int, version: str, before: str | None) -> Record:
    return Record(i, "promotion", version, before, "promoted", T)


def test_the_default_is_the_previous_champion_and_every_former_champion_is_eligible():
    history = [promoted(1, "1", None), promoted(2, "2", "1"), promoted(3, "3", "2")]

    plan = plan_rollback(history, "3")

    assert plan.ok and (plan.target, plan.reason, plan.ends) == ("2", "v2 (previous champion)", None)
    assert [f.version for f in plan.eligible] == ["2", "1"]


def test_a_version_the_canary_rejected_is_refused_with_why_and_how_to_promote_it():
    history = [promoted(1, "1", None), promoted(2, "2", "1"),
               Record(3, "promotion", "5", "2", "rolled_back", T)]  # fmt: skip

    plan = plan_rollback(history, "2", requested="5")

    assert not plan.ok and plan.target is None
    assert plan.refusal.startswith("version 5 never served as champion (rejected by the canary in promotion #3)")
    assert """airflow dags trigger clm_promotion -c '{"version": "5"}'""" in plan.refusal
    assert plan.marks["5"].text == "rejected by the canary (promotion #3)"


def test_a_rolled_back_version_is_never_the_default_but_may_be_named():
    history = [promoted(1, "1", None), promoted(2, "2", "1"), promoted(3, "3", "2"),
               Record(4, "rollback", "2", "3", "completed", T)]  # fmt: skip

    default = plan_rollback(history, "2")
    named = plan_rollback(history, "2", requested="3")

    assert default.target == "1"  # not 3: it was just rolled back
    assert named.ok and named.target == "3" and "rolled back by rollback #4" in named.reason
    assert {f.version: f.mark.text if f.mark else None for f in default.eligible} == {
        "3": "rolled back by rollback #4", "1": None,
    }  # fmt: skip


def test_a_default_target_equal_to_the_champion_is_refused():
    # MLflow's champion was left at the bad version 2 (its write failed); the history says 1 serves after rollback #3.
    history = [promoted(1, "1", None), promoted(2, "2", "1"), Record(3, "rollback", "1", "2", "completed", T)]

    for champion in ("1", "2"):
        plan = plan_rollback(history, champion)
        assert not plan.ok and plan.target is None, champion
        assert "v2 rolled back by rollback #3" in plan.refusal


def test_a_promotion_under_way_is_ended_by_default():
    history = [promoted(1, "1", None), promoted(2, "2", "1"), Record(3, "promotion", "3", "2", "canary", T)]

    plan = plan_rollback(history, "2")

    assert plan.ok and (plan.target, plan.ends, plan.ends_version) == (None, 3, "3")
    assert plan.reason == "end promotion #3 of v3: v2 keeps all traffic"
    assert not plan_rollback(history, "2", requested="3").ok  # the candidate never served as champion


def test_serving_as_champion_again_clears_a_mark_and_nothing_refused_before_is_marked_twice():
    history = [promoted(1, "1", None), Record(2, "promotion", "2", "1", "gate_failed", T), promoted(3, "2", "1")]

    assert marks(history) == {}
    assert marks(history[:2])["2"].text == "rejected by the gate (promotion #2)"


def test_without_a_champion_or_a_predecessor_there_is_nowhere_to_go():
    assert plan_rollback([], None).refusal == "nothing to roll back to: no version is champion yet"
    first = plan_rollback([promoted(1, "1", None)], "1")
    assert first.refusal.startswith("no previous version to roll back to: version 1 is the first champion")
