"""Log loss and accuracy of P(dog) predictions."""

from __future__ import annotations

import numpy as np

# Kaggle's scorer clips predictions to [1e-15, 1 - 1e-15] before taking logs.
KAGGLE_EPS = 1e-15


def log_loss(labels, probs, eps: float = KAGGLE_EPS) -> float:
    """Mean binary log loss after clipping probabilities to [eps, 1 - eps]."""
    labels = np.asarray(labels, dtype=np.float64)
    probs = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    return float(-np.mean(labels * np.log(probs) + (1.0 - labels) * np.log1p(-probs)))


def accuracy(labels, probs) -> float:
    """Share of photos on the right side of 0.5."""
    labels = np.asarray(labels)
    return float(np.mean((np.asarray(probs) >= 0.5) == (labels >= 0.5)))


def sigmoid(logits) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(logits, dtype=np.float64)))


def logit(probs, eps: float = 1e-7) -> np.ndarray:
    probs = np.clip(np.asarray(probs, dtype=np.float64), eps, 1.0 - eps)
    return np.log(probs) - np.log1p(-probs)
