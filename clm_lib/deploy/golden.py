"""The online golden set: held-out examples answered by a live slot and scored by exact match.

Offline evaluation scored the candidate in-process; this asks the *deployed* slot, through its OpenAI-style
API, so it catches what only shows live (a wrong artifact loaded, a broken tokenizer or prompt template in
the server). The examples are the evaluation's stable subset (:func:`clm_lib.evaluation.metrics.eval_subset`)
of the tasks the candidate learnt, so the candidate and the stable slot answer the same rows every time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select

from clm_lib.config import ClmConfig
from clm_lib.db import session_scope
from clm_lib.db.models import TrainingRun
from clm_lib.errors import ServingError

if TYPE_CHECKING:
    from clm_lib.serving.backends.base import ServingBackend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GoldenSet:
    model: str
    """The registered model name, which every slot answers to."""
    prompts: list[str]
    references: list[str]
    max_tokens: int
    timeout_s: float

    def __len__(self) -> int:
        return len(self.prompts)

    @classmethod
    def load(cls, cfg: ClmConfig, version: str) -> GoldenSet | None:
        """The golden set for ``version``; None when the rule is off or there is no held-out data yet."""
        per_task = cfg.deploy.rules.golden_examples_per_task
        if per_task == 0:
            return None
        from clm_lib.data.ingest import held_out
        from clm_lib.evaluation.metrics import eval_subset

        with session_scope(cfg.database_url) as s:
            run = s.scalars(select(TrainingRun).where(TrainingRun.model_version == version)).first()
            tasks = list(run.tasks) if run is not None and run.tasks else list(cfg.data.tasks)
        try:
            rows = eval_subset(held_out(cfg, tasks), per_task)
        except Exception as exc:  # no curated table yet (a fresh lake): the rule cannot judge, and says so
            log.warning("golden set unavailable: %s", exc)
            return None
        if rows.num_rows == 0:
            return None
        return cls(
            model=cfg.registry.model_name,
            prompts=rows.column("prompt").to_pylist(),
            references=rows.column("response").to_pylist(),
            max_tokens=cfg.deploy.rules.golden_max_tokens,
            timeout_s=cfg.serving.upstream_timeout_s,
        )

    def score(self, backend: ServingBackend, slot: str) -> float:
        """Exact-match accuracy (0-100) of ``slot``'s answers, asked at the slot's own address (not the router)."""
        import httpx

        from clm_lib.modeling.prompt import same_answer
        from clm_lib.serving.backends.probe import probe_headers

        status = backend.status().get(slot)
        if status is None or not status.url:
            raise ServingError(f"{slot} has no address to send the golden set to")
        hits = 0
        # clm's own traffic authenticates like any client where the slot requires API keys (pods on 0.0.0.0).
        with httpx.Client(base_url=status.url, timeout=self.timeout_s, headers=probe_headers()) as http:
            for prompt, reference in zip(self.prompts, self.references, strict=True):
                body = {"model": self.model, "prompt": prompt, "max_tokens": self.max_tokens, "temperature": 0}
                try:
                    response = http.post("/v1/completions", json=body)
                    response.raise_for_status()
                    answer = response.json()["choices"][0]["text"]
                except (httpx.HTTPError, KeyError, IndexError, ValueError) as exc:
                    raise ServingError(f"{slot} failed a golden-set request: {exc}") from None
                hits += same_answer(answer, reference)
        return 100.0 * hits / len(self.prompts)
