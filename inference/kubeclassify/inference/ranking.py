"""A model's probabilities as ranked labels, the same for the predictor and the batch worker (which
must not load KServe for it)."""

from __future__ import annotations

import numpy as np


def top_k(probabilities: np.ndarray, labels: list[str], k: int) -> list[list[tuple[str, float]]]:
    """The k best (label, score) pairs of each row, best first."""
    k = min(k, probabilities.shape[1])
    best = np.argsort(-probabilities, axis=1)[:, :k]
    return [[(labels[j], float(row[j])) for j in idx] for row, idx in zip(probabilities, best, strict=True)]
