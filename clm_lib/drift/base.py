"""What every drift detector shares: the result type, the detector shape, and the registry of detectors by name.

Every detector compares a *reference* window (what the champion was trained on) with a *current* window (what
arrived since) and returns a :class:`DriftResult`. A detector registers with :func:`register_detector` (the idiom of
:mod:`clm_lib.plugins`) and is configured by the section of the same name in
:class:`clm_lib.drift.config.DriftConfig`.

A detector never raises on bad input and never answers "no drift" when it could not look: too little data
gives ``Status.INSUFFICIENT`` (``drift`` is None), a missing embedding model ``Status.DEGRADED`` (the fallback's
verdict is still given), an unexpected failure ``Status.ERROR`` with the error in the explanation.

Loading the config imports this package (``clm_lib.drift.config``), so this module keeps to the standard library:
numpy is imported where a detector runs, and windows (numpy, pyarrow) live in :mod:`clm_lib.drift.window`.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from clm_lib.drift.config import DetectorSettings
from clm_lib.plugins import Registry

if TYPE_CHECKING:
    import numpy as np

    from clm_lib.drift.window import TextWindow

log = logging.getLogger(__name__)


class Status(StrEnum):
    OK = "ok"
    INSUFFICIENT = "insufficient data"
    DEGRADED = "degraded: using fallback"
    ERROR = "error"


@dataclass(frozen=True)
class DriftResult:
    """One detector's verdict on one pair of windows."""

    detector: str
    status: Status
    drift: bool | None
    """True: drifted; False: tested and no drift; None: could not decide (see ``status`` and ``explanation``)."""
    explanation: str
    """One or two sentences a person can act on: what moved, by how much, or why nothing could be said."""
    statistic: float | None = None
    """The test statistic (MMD², the largest K-S D, chi-square, perplexity ratio, largest accuracy drop...)."""
    p_value: float | None = None
    """The (corrected, where several tests are combined) p-value; None for threshold-only checks."""
    threshold: float | None = None
    """What the p-value (or, without one, the statistic) is compared to."""
    n_reference: int = 0
    """Rows of the reference window the test used (after subsampling and dropping unusable rows)."""
    n_current: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    """Detector-specific numbers for the screens (per-feature tests, per-task scores, representation...)."""
    duration_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe (numpy scalars become Python numbers, NaN and infinities become None)."""
        return jsonable({**asdict(self), "status": str(self.status)})


def jsonable(value: Any) -> Any:
    """``value`` with numpy types, tuples and non-finite floats turned into what every JSON column accepts.

    PostgreSQL's JSON type rejects the ``NaN`` that Python's ``json`` writes, so non-finite floats become None.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if hasattr(value, "tolist"):  # a numpy array (-> lists) or scalar (-> its Python number), without numpy here
        return jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass
class DriftContext:
    """What the model-based detectors need, and shared resources. Everything is optional."""

    nll_fn: Callable[[Sequence[str]], np.ndarray] | None = None
    """Texts -> the champion's mean negative log-likelihood per token of each (see ``perplexity.nll_fn_from_model``)."""
    score_fn: Callable[[TextWindow], np.ndarray] | None = None
    """Labelled rows -> the champion's score per row in [0, 1] (exact match: 0 or 1)."""
    eval_scores: Mapping[str, tuple[float, int]] | None = None
    """Task -> (the champion's evaluation accuracy 0-100, examples it was measured on)."""
    champion_version: str | None = None
    """The registered model version these callables score with, recorded in the reports."""
    cache_dir: Path | None = None
    """Where reference embeddings are cached between checks (keyed by content); None: no cache."""
    embedder: Any = None
    """A prebuilt sentence :class:`~clm_lib.drift.representation.Representation` for the embedding test
    (tests and benchmarks share one; default: all-MiniLM-L6-v2, loaded once per process)."""


class Detector(ABC):
    """The one shape of a detector: built from its settings, called with two windows and a context.

    Subclasses implement :meth:`_check`; :meth:`check` adds the minimum-sample guard, timing, and turns any
    unexpected exception into an ``error`` result, so one broken detector never stops the others.
    """

    name: ClassVar[str]
    settings_type: ClassVar[type[DetectorSettings]] = DetectorSettings

    def __init__(self, settings: DetectorSettings | None = None, *, seed: int = 0) -> None:
        self.settings = settings if settings is not None else self.settings_type()
        self.seed = seed

    def rng(self, side: str) -> np.random.Generator:
        """A generator per detector and side: subsamples do not depend on which other detectors ran."""
        import numpy as np  # here, not at the top: see the module docstring

        return np.random.default_rng([self.seed, zlib.crc32(self.name.encode()), zlib.crc32(side.encode())])

    def result(self, status: Status, drift: bool | None, explanation: str, **kw: Any) -> DriftResult:
        return DriftResult(self.name, status, drift, explanation, **kw)

    def insufficient(self, explanation: str, **kw: Any) -> DriftResult:
        return self.result(Status.INSUFFICIENT, None, explanation, **kw)

    def check(self, reference: TextWindow, current: TextWindow, context: DriftContext | None = None) -> DriftResult:
        start = time.perf_counter()
        context = context or DriftContext()
        n_ref, n_cur = len(reference), len(current)
        try:
            if min(n_ref, n_cur) < self.settings.min_samples:
                res = self.insufficient(
                    f"{n_ref} reference and {n_cur} current rows; at least {self.settings.min_samples} per side "
                    "are needed to judge",
                    n_reference=n_ref,
                    n_current=n_cur,
                )
            else:
                res = self._check(reference, current, context)
        except Exception as exc:  # a detector bug must not hide the other detectors' verdicts
            log.exception("drift detector %s failed", self.name)
            res = self.result(Status.ERROR, None, f"{type(exc).__name__}: {exc}", n_reference=n_ref,
                              n_current=n_cur)
        return replace(res, duration_s=round(time.perf_counter() - start, 4))

    @abstractmethod
    def _check(self, reference: TextWindow, current: TextWindow, context: DriftContext) -> DriftResult:
        """Both windows hold at least ``min_samples`` rows here."""


DETECTORS: Registry[Detector] = Registry(
    "drift detector",
    Detector,
    # Imported on first use, not with the package: they pull in scipy and scikit-learn.
    {name: f"clm_lib.drift.{name}" for name in ("embedding_mmd", "text_stats", "task_mix", "perplexity", "concept")},
)


def register_detector(*, name: str, detector_cls: type[Detector]) -> None:
    """Make ``detector_cls`` available under ``name``, which is also the name of its ``drift.<name>`` config section."""
    DETECTORS.register(name, detector_cls)


def get_detector(name: str) -> type[Detector]:
    """The detector class registered under ``name``; an unknown name is a ``ConfigError`` listing the known ones."""
    return DETECTORS.get(name)


def available_detectors() -> list[str]:
    return DETECTORS.names()
