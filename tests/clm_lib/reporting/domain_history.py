"""Stored domain-adaptation comparisons for the reporting, REST and screen tests (hostile strings included)."""

from __future__ import annotations

from clm_lib.evaluation.domain_comparison import DOMAIN_DIR, DomainComparison, TaskChange, save_comparison
from tests.clm_lib.reporting.training_history import HOSTILE


def seed_domain(cfg) -> tuple[str, str]:
    """Two adapted bases under ``<models>/domain``: an older one with an adapter, a newer one scored alone.
    Returns their folders, newest first."""
    older = cfg.models_dir / DOMAIN_DIR / "base-1"
    newer = cfg.models_dir / DOMAIN_DIR / "base-2"
    for folder in (older, newer):
        folder.mkdir(parents=True)
    save_comparison(
        DomainComparison(
            str(cfg.models_dir / "base"), str(older), adapter=f"/adapters/{HOSTILE}",
            tasks=[TaskChange("routers", "original", 80.0, 75.0, 0.5, 0.6, 40),
                   TaskChange(HOSTILE, "new", 10.0, 35.5, 3.0, 2.0, 40)],
            text_loss_before=7.5, text_loss_after=5.25, created_at="2026-12-01T10:00:00+00:00",
        ),
        older,
    )  # fmt: skip
    save_comparison(
        DomainComparison(str(cfg.models_dir / "base"), str(newer), None, [], 7.0, 6.0, "2026-12-02T10:00:00+00:00"),
        newer,
    )
    return str(newer), str(older)
