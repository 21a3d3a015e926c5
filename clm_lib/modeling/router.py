"""The learned task router: which task's adapter answers a prompt when the caller names no task.

A logistic regression (scikit-learn) on hashed word 1-2-grams of the prompt. The hashing vectorizer has no
fitted state, so the router is its weights plus a *memory*: for every task, up to ``examples_per_task`` of its
prompts, kept as hashed feature rows (not as text). The memory is a bottom-k sample by a hash of the prompt, i.e.
a deterministic uniform sample of every prompt the task ever offered that changes as little as possible between
updates (the replay buffer keeps its records the same way). Each update refits the router on the memory plus the
prompts it brings, so a task whose data is gone (no replay, a task removed from the buffer) is still routed.

Saved as ``router.json`` (tasks, settings, held-out accuracy) and ``router.npz`` (weights and memory), loaded
without pickle.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

ROUTER_JSON = "router.json"
ROUTER_ARRAYS = "router.npz"
FORMAT = 1


def _vectorizer(n_features: int):
    from sklearn.feature_extraction.text import HashingVectorizer

    return HashingVectorizer(
        analyzer="word", ngram_range=(1, 2), n_features=n_features, alternate_sign=False, norm="l2", dtype=np.float32
    )


def prompt_key(task: str, prompt: str) -> int:
    """A stable pseudo-random 63-bit key of one prompt of one task (bottom-k sampling and the held-out split)."""
    digest = hashlib.blake2b(f"{task}\x00{prompt}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


@dataclass
class Memory:
    """Remembered prompts as hashed feature rows: row ``i`` belongs to ``tasks[labels[i]]`` and has key ``keys[i]``."""

    tasks: list[str]
    """The router's tasks: every one has remembered rows."""
    keys: np.ndarray
    labels: np.ndarray
    features: sp.csr_matrix

    def rows(self, task: str) -> np.ndarray:
        if task not in self.tasks:
            return np.zeros(0, dtype=np.int64)
        return np.flatnonzero(self.labels == self.tasks.index(task))


@dataclass
class TaskRouter:
    """Routes prompts to task names. Build one with :meth:`fit`; ``accuracy`` is measured on held-out prompts."""

    tasks: list[str]
    coef: np.ndarray
    """``(len(tasks), n_features)``: a prompt goes to the task with the largest ``x @ coef.T + intercept``."""
    intercept: np.ndarray
    n_features: int
    memory: Memory
    accuracy: float | None = None
    """Share of held-out remembered prompts routed to their own task (``None``: nothing was held out)."""
    accuracy_by_task: dict[str, float] = field(default_factory=dict)
    held_out: int = 0
    settings: dict[str, Any] = field(default_factory=dict)

    # --- fitting ------------------------------------------------------------------------------------------------

    @classmethod
    def fit(
        cls,
        prompts_by_task: Mapping[str, Iterable[str]],
        *,
        previous: TaskRouter | None = None,
        drop: Sequence[str] = (),
        examples_per_task: int = 200,
        holdout_fraction: float = 0.2,
        n_features: int = 2**15,
        inverse_regularization: float = 10.0,
    ) -> TaskRouter:
        """Refit on ``previous``'s memory plus ``prompts_by_task``, forgetting the tasks in ``drop``.

        The previous memory fixes ``n_features`` (its rows were hashed with it).
        """
        if previous is not None:
            n_features = previous.n_features
        vectorizer = _vectorizer(n_features)
        keys: list[np.ndarray] = []
        labels: list[np.ndarray] = []
        blocks: list[sp.csr_matrix] = []
        tasks: list[str] = []

        def task_index(task: str) -> int:
            if task not in tasks:
                tasks.append(task)
            return tasks.index(task)

        if previous is not None:
            for task in previous.memory.tasks:
                rows = previous.memory.rows(task)
                if task in drop or not len(rows):
                    continue
                keys.append(previous.memory.keys[rows])
                labels.append(np.full(len(rows), task_index(task), dtype=np.int32))
                blocks.append(previous.memory.features[rows])
        for task, prompts in prompts_by_task.items():
            prompts = list(dict.fromkeys(prompts))
            if task in drop or not prompts:
                continue
            keys.append(np.array([prompt_key(task, p) for p in prompts], dtype=np.int64))
            labels.append(np.full(len(prompts), task_index(task), dtype=np.int32))
            blocks.append(vectorizer.transform(prompts).tocsr())
        if not tasks:
            raise ValueError("a router needs prompts of at least one task")
        all_keys = np.concatenate(keys)
        all_labels = np.concatenate(labels)
        features = sp.vstack(blocks, format="csr")
        keep = _bottom_k(all_keys, all_labels, examples_per_task)
        memory = Memory(tasks, all_keys[keep], all_labels[keep], features[keep])
        router = cls._fit_memory(memory, holdout_fraction, inverse_regularization)
        router.settings = {
            "examples_per_task": examples_per_task,
            "holdout_fraction": holdout_fraction,
            "inverse_regularization": inverse_regularization,
        }
        return router

    @classmethod
    def _fit_memory(cls, memory: Memory, holdout_fraction: float, c: float) -> TaskRouter:
        from sklearn.linear_model import LogisticRegression
        from threadpoolctl import threadpool_limits

        n_tasks, n_features = len(memory.tasks), memory.features.shape[1]
        held = (memory.keys % 10_000) < holdout_fraction * 10_000
        # Every task keeps at least one training prompt, or it could never be predicted.
        for t in range(n_tasks):
            if not (~held & (memory.labels == t)).any():
                held[memory.labels == t] = False
        train = ~held
        coef = np.zeros((n_tasks, n_features), dtype=np.float32)
        intercept = np.zeros(n_tasks, dtype=np.float32)
        present = np.unique(memory.labels[train])
        if len(present) > 1:
            clf = LogisticRegression(C=c, max_iter=1000)
            # A fit this small gains nothing from BLAS threads and, on a busy machine, loses seconds to them.
            with threadpool_limits(1):
                clf.fit(memory.features[train], memory.labels[train])
            if len(present) == 2:  # sklearn keeps one row for two classes: score the second against zero
                coef[clf.classes_[1]] = clf.coef_[0]
                intercept[clf.classes_[1]] = clf.intercept_[0]
            else:
                coef[clf.classes_] = clf.coef_
                intercept[clf.classes_] = clf.intercept_
        else:
            intercept[present] = 1.0
        router = cls(list(memory.tasks), coef, intercept, n_features, memory)
        if held.any():
            predicted = router._scores(memory.features[held]).argmax(1)
            truth = memory.labels[held]
            router.accuracy = float((predicted == truth).mean())
            router.held_out = int(held.sum())
            router.accuracy_by_task = {
                task: float((predicted[truth == t] == t).mean())
                for t, task in enumerate(memory.tasks)
                if (truth == t).any()
            }
        return router

    # --- routing ------------------------------------------------------------------------------------------------

    def _scores(self, features: sp.csr_matrix) -> np.ndarray:
        return np.asarray(features @ self.coef.T) + self.intercept

    def predict(self, prompts: Sequence[str]) -> list[str]:
        """The task of each prompt."""
        if not prompts:
            return []
        best = self._scores(_vectorizer(self.n_features).transform(list(prompts))).argmax(1)
        return [self.tasks[int(i)] for i in best]

    def summary(self) -> dict[str, Any]:
        """What a training run records about its router."""
        return {
            "router_tasks": list(self.tasks),
            "router_accuracy": self.accuracy,
            "router_accuracy_by_task": dict(self.accuracy_by_task),
            "router_held_out": self.held_out,
            "router_examples": len(self.memory.keys),
        }

    # --- persistence --------------------------------------------------------------------------------------------

    def save(self, directory: Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "tasks": self.tasks,
            "n_features": self.n_features,
            **self.summary(),
            "settings": self.settings,
        }
        (directory / ROUTER_JSON).write_text(json.dumps(meta, indent=2))
        f = self.memory.features
        with open(directory / ROUTER_ARRAYS, "wb") as fh:
            np.savez_compressed(
                fh,
                coef=self.coef,
                intercept=self.intercept,
                mem_keys=self.memory.keys,
                mem_labels=self.memory.labels,
                mem_data=f.data,
                mem_indices=f.indices,
                mem_indptr=f.indptr,
            )
        return directory

    @classmethod
    def load(cls, directory: Path) -> TaskRouter:
        directory = Path(directory)
        meta = json.loads((directory / ROUTER_JSON).read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"router at {directory} has format {meta.get('format')}, this clm reads {FORMAT}")
        with np.load(directory / ROUTER_ARRAYS, allow_pickle=False) as a:
            n = int(meta["n_features"])
            features = sp.csr_matrix((a["mem_data"], a["mem_indices"], a["mem_indptr"]), shape=(len(a["mem_keys"]), n))
            memory = Memory(list(meta["tasks"]), a["mem_keys"], a["mem_labels"], features)
            return cls(
                tasks=list(meta["tasks"]),
                coef=a["coef"],
                intercept=a["intercept"],
                n_features=n,
                memory=memory,
                accuracy=meta.get("router_accuracy"),
                accuracy_by_task=dict(meta.get("router_accuracy_by_task") or {}),
                held_out=int(meta.get("router_held_out") or 0),
                settings=dict(meta.get("settings") or {}),
            )


def _bottom_k(keys: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest distinct keys of each label (duplicate keys are the same prompt)."""
    picked: list[np.ndarray] = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        _, first = np.unique(keys[rows], return_index=True)  # sorted by key, first occurrence of each
        picked.append(rows[first[:k]])
    return np.sort(np.concatenate(picked))
