"""How a candidate that passed the gate reaches production traffic, and when it is pulled back.

A rollout deploys the candidate to the idle serving slot, smoke-tests it, then shifts traffic in steps
(``canary``) or at once (``blue_green``). After every step it bakes: for ``bake_seconds`` it watches the
candidate's live metrics, and at the end it scores a few held-out examples through the candidate and the
stable slot (the online golden set). Any breached rule sets the candidate's weight back to 0 and records why;
the champion alias moves only after the last step baked clean, and the old slot stays warm for a rollback.
"""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from clm_lib.serving.config import ServingConfig


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SafetyRules(_Section):
    """Limits on the candidate during every bake window; one breach rolls it back."""

    max_error_rate: float = Field(default=0.05, ge=0.0, le=1.0)
    """Largest share of failed requests (5xx, timeouts) the candidate may serve in a window."""
    max_p95_ms: float = Field(default=2000.0, gt=0)
    """Largest 95th-percentile latency of the candidate's requests, in milliseconds."""
    min_requests: int = Field(default=20, ge=1)
    """Error rate and latency are judged only on at least this many requests in the window; with fewer the
    result says "not judged" (the golden set still judges the candidate)."""
    min_feedback_mean: float | None = None
    """Lowest mean user rating of the candidate's answers in a window (the serving feedback scale); None: off."""
    golden_examples_per_task: int = Field(default=4, ge=0)
    """Held-out examples per task sent to the candidate and to the stable slot at the end of each window
    (the same rows every time: the evaluation's stable subset). 0 turns the golden-set rule off."""
    max_golden_drop: float = Field(default=25.0, ge=0, le=100)
    """Largest drop, in exact-match points (0-100), of the candidate's golden-set score below the stable
    slot's on the same examples. Few examples make a coarse score (4 per task over 5 tasks: 5-point steps)."""
    min_golden_accuracy: float = Field(default=0.0, ge=0, le=100)
    """Lowest golden-set exact-match score (0-100) of the candidate, with or without a stable slot."""
    golden_max_tokens: int = Field(default=32, ge=1)
    """``max_tokens`` of each golden-set completion request."""


class GuardRules(_Section):
    """The post-promotion guard's own limits on live traffic; each left unset is the bake window's (``rules``)."""

    max_error_rate: float | None = Field(default=None, ge=0.0, le=1.0)
    """Largest share of failed requests the champion may serve in a guard window; None: ``rules.max_error_rate``."""
    max_p95_ms: float | None = Field(default=None, gt=0)
    """Largest 95th-percentile latency in a guard window, in milliseconds; None: ``rules.max_p95_ms``."""
    min_requests: int | None = Field(default=None, ge=1)
    """Requests a guard window needs before error rate and latency are judged ("not judged" below it, never a
    breach); None: ``rules.min_requests``."""
    min_feedback_mean: float | None = None
    """Lowest mean user rating in a guard window; None: ``rules.min_feedback_mean`` (which may be off)."""

    def over(self, base: SafetyRules) -> SafetyRules:
        """``base`` with the limits set here instead."""
        mine = {k: v for k, v in self.model_dump().items() if v is not None}
        return SafetyRules.model_validate({**base.model_dump(), **mine})


class GuardConfig(_Section):
    """The post-promotion guard (:mod:`clm_lib.deploy.guard`): after a promotion made a version champion, the
    ``clm_deploy_watch`` DAG judges its live traffic by the bake window's live rules (health, error rate, p95,
    feedback; not the golden set) and rolls back on a breach, audited, with an ``alert`` entry in the audit log."""

    enabled: bool = True
    """False: the guard judges nothing (the reconciler still runs)."""
    watch_minutes: float = Field(default=60.0, ge=0)
    """How long after the promotion the champion is watched closely (every ``watch_interval_seconds``)."""
    watch_interval_seconds: float = Field(default=60.0, gt=0)
    """Time between two judgements during the watch period. Judgements happen on ``clm_deploy_watch``'s runs
    (every 2 minutes), so a shorter interval means every run."""
    continuous_interval_seconds: float | None = Field(default=900.0, gt=0)
    """Time between two judgements after the watch period, for as long as the version is champion; None: the
    guard stops judging a champion once its watch period is over."""
    rollback_after_watch: bool = True
    """A breach after the watch period rolls back too; False: it raises an alert only."""
    window_seconds: float = Field(default=300.0, gt=0)
    """Each judgement reads the champion slot's traffic of the last ``window_seconds``, never from before the
    version became champion (so a rollback's new champion is not judged on the old one's traffic). At most
    ``serving.stats_window_s``, the router's memory."""
    rules: GuardRules = GuardRules()


class ReconcilerConfig(_Section):
    """The reconciler (:mod:`clm_lib.deploy.reconciler`): a promotion whose owner stopped reporting back (its task
    was killed) is ended, its candidate's traffic back on the champion, by ``clm_deploy_watch`` and by the
    promotion tasks' failure callback."""

    enabled: bool = True
    """False: ``clm_deploy_watch`` settles nothing (the failure callback and ``clm deploy reconcile`` still do)."""
    stale_after_seconds: float = Field(default=1800.0, gt=0)
    """A promotion under way with no event for this long, while nobody holds the deploy lock, has lost its owner.
    Must exceed the longest silence of a live one: a bake window with its golden set (``bake_seconds`` plus the
    golden-set requests), and the wait for the next Airflow task to start; the configuration refuses one not
    longer than ``bake_seconds``."""


class DeployConfig(_Section):
    """Promotion of a gated candidate to serving, and rollback."""

    strategy: Literal["canary", "blue_green", "alias"] = "canary"
    """``canary``: shift traffic along ``canary_steps`` with a bake window after each. ``blue_green``: switch
    all traffic at once, then bake once (the old slot stays warm). ``alias``: no serving; only the ``champion``
    alias moves (for a serving layer that follows the alias itself)."""
    canary_steps: list[int] = Field(default=[10, 50, 100], min_length=1)
    """Percent of traffic on the candidate at each canary step; strictly increasing, ending at 100."""
    bake_seconds: float = Field(default=60.0, ge=0)
    """Length of the bake window after each traffic step (seconds; a few tenths in tests and the demo)."""
    poll_seconds: float = Field(default=5.0, gt=0)
    """How often live metrics and slot health are checked during a bake window."""
    rules: SafetyRules = SafetyRules()
    guard: GuardConfig = GuardConfig()
    reconciler: ReconcilerConfig = ReconcilerConfig()
    lock_wait_seconds: float = Field(default=60.0, ge=0)
    """How long a promotion or rollback waits for the other to finish its current step before it answers
    "busy". Bake windows run without the lock, so a rollback waits at most for one deploy or traffic switch."""
    lock_lease_seconds: float = Field(default=900.0, gt=0)
    """The deploy lock frees itself this long after its holder last renewed it (a heartbeat renews it every
    fifth of it, at most every minute, and so does the check before each serving change), so a holder that died
    blocks nobody for longer. Must exceed the longest single serving call made under it (loading a model into a
    slot: ``serving.startup_timeout_s``, or ``serving.kubernetes.ready_timeout_s`` on Kubernetes), so that a change
    that started with the lock held ends before anyone else can take it; the configuration refuses a shorter one."""
    require_approval: bool = False
    """True: after the gate and before anything is deployed, ``clm_promotion`` waits for a person to approve the
    promotion in Airflow's "Required actions" (or its HITL REST API); a rejection or no answer within
    ``approval_timeout_seconds`` ends the promotion ``rejected``. A run's ``require_approval`` param can ask for
    approval when this is False, never skip it when True (docs/control-panel.md, "Approval of promotions")."""
    four_eyes: bool = False
    """True: the person who approves must not be the one who asked for the promotion (the run's triggering user,
    or for a run started by a new candidate, the person who requested its training). A self-approval is refused:
    the promotion ends ``rejected`` and the refusal is audited."""
    approval_timeout_seconds: float = Field(default=1200.0, gt=0)
    """How long a promotion waits for an answer before it ends ``rejected`` (Airflow answers "Reject" itself).
    Must be shorter than ``reconciler.stale_after_seconds``: a promotion waiting for approval writes no event, and
    the reconciler would end it as abandoned first; the configuration refuses a longer one."""
    approvers: list[Annotated[str, Field(min_length=1, max_length=250)]] = Field(default=[], max_length=100)
    """Airflow user ids the approval request is assigned to (FAB auth manager: the numeric id ``airflow users
    list`` shows; simple auth manager: the user name); only they may answer, and Airflow answers others 403. Empty:
    anyone Airflow allows to edit the run's "HITL Detail" (FAB: the User, Op and Admin roles); to make approval a
    role of its own, give that permission to one role only (docs/control-panel.md)."""

    @field_validator("canary_steps")
    @classmethod
    def _steps(cls, v: list[int]) -> list[int]:
        if any(not 0 < w <= 100 for w in v):
            raise ValueError("each canary step is a percentage in 1..100")
        if any(a >= b for a, b in pairwise(v)):
            raise ValueError("canary steps must be strictly increasing")
        if v[-1] != 100:
            raise ValueError("the last canary step must be 100 (all traffic on the candidate)")
        return v

    def steps(self) -> list[int]:
        """The traffic steps this strategy takes ([] for ``alias``)."""
        return {"canary": self.canary_steps, "blue_green": [100], "alias": []}[self.strategy]

    @model_validator(mode="after")
    def _reconciler_outwaits_a_bake(self) -> DeployConfig:
        # A live rollout writes no event during a bake window: a shorter bound would end healthy promotions.
        if self.reconciler.stale_after_seconds <= self.bake_seconds:
            raise ValueError(
                f"deploy.reconciler.stale_after_seconds ({self.reconciler.stale_after_seconds:g}) must exceed "
                f"deploy.bake_seconds ({self.bake_seconds:g}): a promotion is silent for a whole bake window"
            )
        return self

    @model_validator(mode="after")
    def _approval_ends_before_the_reconciler(self) -> DeployConfig:
        # A promotion waiting for approval is silent; the reconciler must not end it as abandoned meanwhile.
        if self.approval_timeout_seconds >= self.reconciler.stale_after_seconds:
            raise ValueError(
                f"deploy.approval_timeout_seconds ({self.approval_timeout_seconds:g}) must be shorter than "
                f"deploy.reconciler.stale_after_seconds ({self.reconciler.stale_after_seconds:g}): a promotion "
                "waiting for approval writes no event, so the reconciler would end it as abandoned first"
            )
        return self


def longest_serving_call(serving: ServingConfig) -> tuple[str, float]:
    """The longest single call to the serving backend a promotion or rollback makes under the deploy lock, and
    the setting that bounds it: loading a model into a slot (``deploy`` waits until it answers or is ready), or
    stopping one (it drains first, with 5 s of grace)."""
    if serving.backend == "kubernetes":
        return "serving.kubernetes.ready_timeout_s", serving.kubernetes.ready_timeout_s
    calls = [("serving.startup_timeout_s", serving.startup_timeout_s),
             ("serving.drain_timeout_s", serving.drain_timeout_s + 5)]  # fmt: skip
    return max(calls, key=lambda c: c[1])


def check_lease(deploy: DeployConfig, serving: ServingConfig) -> None:
    """Refuse a deploy-lock lease that a serving call made under it could outlast (``ValueError``): a holder that
    stalled mid-call could then lose the lock while its call still changes what serves, where no fence can stop it.
    Not checked for the ``alias`` strategy, which makes no serving calls."""
    if deploy.strategy == "alias":
        return
    field, seconds = longest_serving_call(serving)
    if deploy.lock_lease_seconds <= seconds:
        grace = " with its 5 s of grace" if field.endswith("drain_timeout_s") else ""
        raise ValueError(
            f"deploy.lock_lease_seconds ({deploy.lock_lease_seconds:g}) must be longer than {field} "
            f"({seconds:g} s{grace}), the longest serving call made under the deploy lock: raise "
            f"deploy.lock_lease_seconds or lower {field}"
        )
