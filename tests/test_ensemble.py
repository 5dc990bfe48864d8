"""Log loss, calibration, clipping, TTA and blending."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from catsdogs.ensemble import average_logits, best_clip, fit_blend_weights, fit_calibration, fit_temperature
from catsdogs.metrics import accuracy, log_loss, sigmoid
from catsdogs.transforms import apply_view


def test_log_loss_kaggle_eps():
    assert log_loss([0, 1], [1.0, 1.0]) == pytest.approx(17.269, abs=1e-3)


def test_log_loss_clip_bound():
    assert log_loss([0, 1], [1.0, 1.0], eps=0.005) == pytest.approx(2.6517, abs=1e-4)


def test_accuracy_threshold():
    assert accuracy([0, 1, 1, 0], [0.2, 0.7, 0.4, 0.5]) == 0.5


def test_temperature_recovered_from_synthetic_logits():
    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 3, size=50_000)
    labels = rng.random(50_000) < sigmoid(true_logits)
    overconfident = true_logits * 2.5
    assert fit_temperature(overconfident, labels) == pytest.approx(2.5, rel=0.03)


def test_best_clip_finds_known_optimum():
    # 99 sure and right, 1 sure and wrong: the loss is lowest when clipping at 1/100.
    labels = np.array([1] * 99 + [0])
    probs = np.ones(100)
    candidates = (1e-4, 1e-3, 1e-2, 5e-2)
    assert best_clip(labels, probs, candidates) == 1e-2


def test_calibration_never_worse_than_raw():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 6, size=2000)
    labels = rng.random(2000) < sigmoid(logits / 3)
    fit = fit_calibration(logits, labels, use_temperature=True, clip=-1)
    assert fit["logloss_calibrated"] <= fit["logloss_temperature"] + 1e-12
    assert fit["logloss_temperature"] < fit["logloss_raw"]


def test_blend_gives_noise_run_no_weight():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, size=4000)
    good = np.clip(np.where(labels == 1, 0.9, 0.1) + rng.normal(0, 0.05, 4000), 0.01, 0.99)
    noise = rng.random(4000)
    weights = fit_blend_weights(np.stack([good, noise], axis=1), labels)
    assert weights[1] < 0.02
    assert weights.sum() == pytest.approx(1.0)


def test_average_in_prob_space():
    logits = np.array([[0.0, np.log(3.0)]])
    averaged = average_logits(logits, "prob")
    assert sigmoid(averaged)[0] == pytest.approx((0.5 + 0.75) / 2)


def test_average_in_logit_space():
    assert average_logits(np.array([[1.0, 3.0]]), "logit")[0] == 2.0


def test_tta_hflip_equals_fliplr():
    rng = np.random.default_rng(3)
    for _ in range(5):
        image = rng.random((3, 7, 11)).astype(np.float32)
        flipped = apply_view(torch.from_numpy(image)[None], "hflip")[0].numpy()
        expected = np.stack([np.fliplr(channel) for channel in image])
        assert np.array_equal(flipped, expected)


def test_tta_zoom_keeps_shape():
    batch = torch.rand(2, 3, 32, 32)
    assert apply_view(batch, "zoom").shape == batch.shape
    assert not torch.equal(apply_view(batch, "zoom"), batch)


def test_unknown_tta_view_rejected():
    with pytest.raises(ValueError, match="vflip"):
        apply_view(torch.zeros(1, 3, 4, 4), "vflip")
