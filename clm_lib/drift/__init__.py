"""Drift detectors: one result type, one detector shape, one registry (all in :mod:`clm_lib.drift.base`).

The built-in detectors live one per module (``embedding_mmd``, ``text_stats``, ``task_mix``, ``perplexity``,
``concept``) and are imported on first use. Windows are :class:`clm_lib.drift.window.TextWindow`, not re-exported
here: this package is imported whenever the config is loaded, and windows bring numpy and pyarrow.
"""

from clm_lib.drift.base import (
    DETECTORS,
    Detector,
    DriftContext,
    DriftResult,
    Status,
    available_detectors,
    get_detector,
    jsonable,
    register_detector,
)

__all__ = [
    "DETECTORS",
    "Detector",
    "DriftContext",
    "DriftResult",
    "Status",
    "available_detectors",
    "get_detector",
    "jsonable",
    "register_detector",
]
