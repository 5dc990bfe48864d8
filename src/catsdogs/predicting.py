"""Test-set prediction: every fold model of one or more runs, TTA, calibration and blending."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from catsdogs import config as config_lib
from catsdogs.data import PhotoDataset, cached_images, image_cache_path, scan_test
from catsdogs.engine import predict_logits, resolve_device
from catsdogs.ensemble import average_logits, best_clip, calibrate, fit_blend_weights, score_run
from catsdogs.features import CachedViewsDataset, prefix_features, split_model
from catsdogs.images import find_bad_images
from catsdogs.io import load_checkpoint
from catsdogs.metrics import log_loss
from catsdogs.models import build_model, set_finetune_mode
from catsdogs.training import frozen_prefix_length_of
from catsdogs.transforms import check_views, eval_transform

log = logging.getLogger(__name__)


@dataclass
class Run:
    folder: Path
    cfg: object
    cv: dict


def load_run(folder: Path, overrides: list[str]) -> Run:
    """Load a finished run folder: its saved config (plus overrides) and its CV report."""
    config_path = folder / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(f"{folder} is not a run folder: {config_path} is missing. "
                                f"Train it first with: bash scripts/train_folds.sh")
    cfg = config_lib.load_config(config_path, overrides)
    cv_path = folder / "cv.json"
    cv = json.loads(cv_path.read_text()) if cv_path.is_file() else score_run(folder, cfg)
    if list(cv.get("tta", [])) != list(cfg.predict.tta) or cv.get("average") != cfg.predict.average:
        log.warning("%s: predict.tta/average differ from those its CV was measured with (%s, %s); "
                    "the CV score will not describe this submission", folder, cv.get("tta"), cv.get("average"))
    return Run(folder, cfg, cv)


def _fold_model(run: Run, fold: int, device: torch.device) -> tuple[torch.nn.Module, dict]:
    path = run.folder / f"fold_{fold}" / "best.pt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: fold {fold} of {run.folder} has not finished training")
    checkpoint = load_checkpoint(path, map_location="cpu")
    model = build_model(checkpoint["model_name"], num_classes=checkpoint["num_classes"], pretrained=False,
                        drop_rate=run.cfg.model.drop_rate)
    model.load_state_dict(checkpoint["model"])
    set_finetune_mode(model, run.cfg.model.finetune, run.cfg.model.trainable_stages)
    model.to(device).eval()
    if run.cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)
    return model, checkpoint


def predict_run_logits(run: Run, test: pd.DataFrame, device: torch.device) -> np.ndarray:
    """Average every fold model's TTA logits over the test photos (in the run's averaging space)."""
    cfg = run.cfg
    views = check_views(cfg.predict.tta)
    test_dir = Path(cfg.data.root) / "test"
    paths = [test_dir / name for name in test["image"]]
    size = cfg.data.image_size
    use_array = cfg.data.cache_images or cfg.train.cache_frozen
    cache_path = image_cache_path(paths, size, cfg.data.cache_dir) if use_array else None
    array = cached_images(paths, size, cfg.data.cache_dir, cfg.data.decode_workers, cache_path) if use_array else None

    fold_logits = []
    for fold in range(cfg.data.n_folds):
        model, checkpoint = _fold_model(run, fold, device)
        mean, std = checkpoint["mean"], checkpoint["std"]
        if cfg.train.cache_frozen:
            # Every fold shares the frozen pretrained prefix, so its features are computed once
            # and found in the cache by the later folds.
            prefix, rest = split_model(model, frozen_prefix_length_of(model))
            features = prefix_features(prefix, array, cache_path.name,
                                       views, mean, std, cfg.data.cache_dir, device,
                                       cfg.train.eval_batch_size, cfg.train.channels_last)
            dataset = CachedViewsDataset(features, np.arange(len(paths)), np.zeros(len(paths)), random_view=False)
            forward, views_cached = rest, True
        else:
            transform = eval_transform(size, mean, std)
            if array is not None:
                dataset = PhotoDataset(transform, np.zeros(len(paths)), array=array)
            else:
                dataset = PhotoDataset(transform, np.zeros(len(paths)), paths=paths, size=size)
            forward, views_cached = model, False
        workers = 0 if views_cached else cfg.train.num_workers
        loader = torch.utils.data.DataLoader(dataset, batch_size=cfg.train.eval_batch_size, num_workers=workers,
                                             timeout=cfg.train.loader_timeout if workers else 0)
        logits = predict_logits(forward, loader, views, device, cfg.train.channels_last, cfg.train.amp,
                                views_cached=views_cached)
        fold_logits.append(average_logits(logits, cfg.predict.average))
        log.info("%s fold %d: predicted %d test photos with %d TTA views", run.cfg.experiment, fold, len(paths),
                 len(views))
    return average_logits(np.stack(fold_logits, axis=1), cfg.predict.average)


def blend_runs(runs: list[Run]) -> tuple[np.ndarray, float, float]:
    """Fit blend weights and a clipping bound on the runs' calibrated OOF predictions.

    Returns (weights, clip, blended CV log loss).
    """
    frames = [pd.read_csv(run.folder / "oof.csv").set_index("image").sort_index() for run in runs]
    for run, frame in zip(runs[1:], frames[1:]):
        if not frame.index.equals(frames[0].index):
            raise ValueError(f"Cannot blend {runs[0].folder} and {run.folder}: their OOF predictions cover "
                             f"different photos; blend only runs trained on the same data and folds")
    labels = frames[0]["label"].to_numpy()
    columns = np.stack([frame["prob"].to_numpy() for frame in frames], axis=1)
    weights = fit_blend_weights(columns, labels)
    blended = columns @ weights
    clip = best_clip(labels, blended)
    return weights, clip, log_loss(labels, np.clip(blended, clip, 1 - clip))


def load_test_photos(root: str | Path, workers: int) -> tuple[pd.DataFrame, list[str]]:
    """Scan the test folder and list the photos that cannot be decoded."""
    test = scan_test(root)
    bad = find_bad_images([Path(root) / "test" / name for name in test["image"]], workers=workers)
    if bad:
        listing = "\n".join(f"  {path.name}: {reason}" for path, reason in bad)
        log.warning("%d test photos cannot be decoded; they get P(dog) = 0.5:\n%s", len(bad), listing)
    return test, [path.name for path, _ in bad]


def predict_runs(runs: list[Run]) -> tuple[pd.DataFrame, str, float]:
    """Predict the test photos with every run and blend them.

    Returns the submission frame (id, label), a name for it and its CV log loss.
    """
    cfg = runs[0].cfg
    device = resolve_device(cfg.train.device)
    test, bad_names = load_test_photos(cfg.data.root, cfg.data.decode_workers)
    usable = test[~test["image"].isin(bad_names)].reset_index(drop=True)

    probs_per_run = []
    for run in runs:
        calibration = run.cv["calibration"]
        log.info("%s: CV log loss %.5f, accuracy %.4f (temperature %.3f, clip %.4g)", run.cfg.experiment,
                 run.cv["logloss"], run.cv["accuracy"], calibration["temperature"], calibration["clip"])
        logits = predict_run_logits(run, usable, device)
        probs_per_run.append(calibrate(logits, calibration["temperature"], calibration["clip"]))

    if len(runs) == 1:
        probs, name, score = probs_per_run[0], runs[0].cfg.experiment, runs[0].cv["logloss"]
    else:
        weights, clip, score = blend_runs(runs)
        for run, weight in zip(runs, weights):
            log.info("Blend weight %.3f for %s", weight, run.cfg.experiment)
        log.info("Blend CV log loss %.5f (clip %.4g)", score, clip)
        probs = np.clip(np.stack(probs_per_run, axis=1) @ weights, clip, 1 - clip)
        name = "blend-" + "+".join(run.cfg.experiment for run in runs)

    labels = pd.Series(probs, index=usable["id"].to_numpy())
    submission = pd.DataFrame({"id": test["id"], "label": test["id"].map(labels).fillna(0.5)})
    return submission, name, score
