"""Averaging over TTA views and folds, calibration, clipping and blending of runs.

All of it is fitted on out-of-fold predictions and applied unchanged to the test
photos, so the CV score measures exactly what is submitted.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize, minimize_scalar

from catsdogs.io import atomic_write, write_text
from catsdogs.metrics import KAGGLE_EPS, accuracy, log_loss, logit, sigmoid

log = logging.getLogger(__name__)

# Candidate clipping bounds searched on OOF predictions.
CLIP_CANDIDATES = (KAGGLE_EPS, 1e-6, 1e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 7.5e-3, 1e-2, 1.5e-2,
                   2e-2, 3e-2, 5e-2)


def average_logits(logits: np.ndarray, space: str, axis: int = -1) -> np.ndarray:
    """Average logits over an axis (TTA views or folds) in `prob` or `logit` space; return logits."""
    logits = np.asarray(logits, dtype=np.float64)
    if space == "logit":
        return logits.mean(axis=axis)
    if space == "prob":
        return logit(sigmoid(logits).mean(axis=axis))
    raise ValueError(f"Unknown averaging space {space!r}: expected prob or logit")


def fit_temperature(logits, labels) -> float:
    """Return the temperature T that minimises the log loss of sigmoid(logits / T)."""
    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)

    def loss(log_t: float) -> float:
        return log_loss(labels, sigmoid(logits / np.exp(log_t)))

    result = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded",
                             options={"xatol": 1e-6})
    return float(np.exp(result.x))


def best_clip(labels, probs, candidates=CLIP_CANDIDATES) -> float:
    """Return the clipping bound from `candidates` with the lowest log loss (smallest bound on ties)."""
    losses = [log_loss(labels, probs, eps=eps) for eps in candidates]
    return float(candidates[int(np.argmin(losses))])


def calibrate(logits, temperature: float, clip: float) -> np.ndarray:
    """Apply a fitted temperature and clipping bound to logits; return probabilities."""
    return np.clip(sigmoid(np.asarray(logits, dtype=np.float64) / temperature), clip, 1.0 - clip)


def fit_calibration(logits, labels, use_temperature: bool, clip: float) -> dict:
    """Fit temperature (optional) and clipping bound (when `clip` < 0) on OOF logits.

    Returns the fitted values and the OOF log loss before and after each step.
    """
    logits = np.asarray(logits, dtype=np.float64)
    raw = sigmoid(logits)
    temperature = fit_temperature(logits, labels) if use_temperature else 1.0
    scaled = sigmoid(logits / temperature)
    bound = best_clip(labels, scaled) if clip < 0 else max(float(clip), KAGGLE_EPS)
    return {
        "temperature": temperature,
        "clip": bound,
        "logloss_raw": log_loss(labels, raw),
        "logloss_temperature": log_loss(labels, scaled),
        "logloss_calibrated": log_loss(labels, calibrate(logits, temperature, bound)),
    }


def fit_blend_weights(prob_columns: np.ndarray, labels) -> np.ndarray:
    """Fit non-negative weights summing to 1 that minimise the log loss of a weighted mean.

    `prob_columns` is [N, R]: one column of OOF probabilities per run.
    """
    prob_columns = np.asarray(prob_columns, dtype=np.float64)
    runs = prob_columns.shape[1]
    if runs == 1:
        return np.ones(1)

    def loss(weights: np.ndarray) -> float:
        return log_loss(labels, prob_columns @ weights, eps=1e-7)

    start = np.full(runs, 1.0 / runs)
    result = minimize(loss, start, method="SLSQP", bounds=[(0.0, 1.0)] * runs,
                      constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0}])
    weights = np.clip(result.x, 0.0, None)
    return weights / weights.sum()


def score_run(folder: Path, cfg) -> dict:
    """Pool the folds' OOF predictions of a run, fit calibration on them and write oof.csv and cv.json.

    The CV log loss is that of the pooled OOF probabilities after the same temperature and
    clipping that prediction applies to the test photos.
    """
    frames = []
    missing = []
    for fold in range(cfg.data.n_folds):
        path = folder / f"fold_{fold}" / "oof.csv"
        if path.is_file():
            frames.append(pd.read_csv(path))
        else:
            missing.append(fold)
    if missing:
        raise FileNotFoundError(f"Folds {missing} of {folder} have no oof.csv yet: train them first "
                                f"(bash scripts/train_folds.sh with the same config)")
    oof = pd.concat(frames, ignore_index=True)
    labels = oof["label"].to_numpy()
    fit = fit_calibration(oof["logit"].to_numpy(), labels, cfg.predict.calibrate, cfg.predict.clip)
    oof["prob"] = calibrate(oof["logit"].to_numpy(), fit["temperature"], fit["clip"])

    per_fold = []
    for fold, rows in oof.groupby("fold", sort=True):
        per_fold.append({"fold": int(fold), "photos": len(rows),
                         "logloss": log_loss(rows["label"], rows["prob"]),
                         "accuracy": accuracy(rows["label"], rows["prob"])})
    fold_losses = np.array([entry["logloss"] for entry in per_fold])
    report = {
        "experiment": cfg.experiment,
        "logloss": log_loss(labels, oof["prob"]),
        "accuracy": accuracy(labels, oof["prob"]),
        "photos": len(oof),
        "fold_logloss_mean": float(fold_losses.mean()),
        "fold_logloss_std": float(fold_losses.std()),
        "folds": per_fold,
        "calibration": fit,
        "tta": list(cfg.predict.tta),
        "average": cfg.predict.average,
    }
    with atomic_write(folder / "oof.csv") as handle:
        oof.to_csv(handle, index=False)
    write_text(folder / "cv.json", json.dumps(report, indent=2) + "\n")
    return report
