"""Training one fold: data, model, epochs, checkpoints, history and out-of-fold predictions.

A fold's folder is `runs/<experiment>/fold_<k>/`. `last.pt` is written after every
epoch, so a killed run started again with the same command resumes from its last
complete epoch. `oof.csv` is written last and marks the fold as finished.
"""

from __future__ import annotations

import logging
import secrets
import time
from pathlib import Path

import numpy as np
import pandas as pd
import timm.data
import torch
import yaml

from catsdogs import config as config_lib
from catsdogs.data import PhotoDataset, cached_images, image_cache_path, load_or_make_folds
from catsdogs.engine import (ModelEma, NonFiniteLossError, bce_loss, build_optimizer, build_scheduler, needs_grad_scaler,
                             predict_logits, resolve_device, seed_everything, train_one_epoch)
from catsdogs.ensemble import average_logits
from catsdogs.features import CachedViewsDataset, frozen_prefix_length, prefix_features, split_model
from catsdogs.io import atomic_write, load_checkpoint, save_checkpoint, write_text
from catsdogs.metrics import accuracy, log_loss, sigmoid
from catsdogs.models import build_model, model_stages, set_finetune_mode, train_mode, unfreeze_all
from catsdogs.tracking import Tracker
from catsdogs.transforms import check_views, eval_transform, train_transform

log = logging.getLogger(__name__)

# Keys that may change between the folds of one run without changing its results.
RESULT_NEUTRAL_KEYS = ("train.num_workers", "train.loader_timeout", "train.eval_batch_size", "train.device",
                       "data.decode_workers", "data.cache_dir", "data.cache_images", "data.root", "wandb")


class RunMismatchError(RuntimeError):
    """A run folder made with another config or other folds than the current ones."""


def run_dir(cfg) -> Path:
    return Path(cfg.runs.dir) / cfg.experiment


def _flatten(tree: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _config_differences(saved: dict, current: dict) -> list[str]:
    old, new = _flatten(saved), _flatten(current)
    keys = sorted(set(old) | set(new))
    return [key for key in keys if old.get(key) != new.get(key)
            and not any(key == k or key.startswith(k + ".") for k in RESULT_NEUTRAL_KEYS)]


def prepare_run_dir(cfg, folds: pd.DataFrame) -> Path:
    """Write config.yaml and folds.csv into the run folder, or check them against an existing run."""
    folder = run_dir(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "config.yaml"
    current = config_lib.to_dict(cfg)
    if config_path.is_file():
        differences = _config_differences(yaml.safe_load(config_path.read_text()) or {}, current)
        if differences:
            raise RunMismatchError(
                f"{folder} contains a run made with another config (differs in {', '.join(differences[:5])}). "
                f"Use another experiment=NAME or runs.dir=DIR, or delete {folder} to start over.")
    write_text(config_path, config_lib.to_yaml(cfg))

    folds_copy = folder / "folds.csv"
    if folds_copy.is_file():
        saved = pd.read_csv(folds_copy)
        if not saved[["image", "label", "fold"]].equals(folds[["image", "label", "fold"]]):
            raise RunMismatchError(f"{folds_copy} differs from the folds of {cfg.data.root}. "
                                   f"Delete {folder} to train on the current folds.")
    else:
        with atomic_write(folds_copy) as handle:
            folds.to_csv(handle, index=False)
    return folder


def fold_is_finished(cfg, fold: int) -> bool:
    return (run_dir(cfg) / f"fold_{fold}" / "oof.csv").is_file()


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker with base + worker_id, and draws the base from the main process's
    # generator, which is seeded per epoch. albumentations has a generator of its own to seed.
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(torch.initial_seed() % 2**32)


def _loader(dataset, cfg, batch_size: int, shuffle: bool, drop_last: bool = False):
    # Cached features need no decoding or augmentation, so worker processes would only add overhead.
    workers = 0 if isinstance(dataset, CachedViewsDataset) else cfg.train.num_workers
    # Workers are started anew every epoch (not persistent), so a resumed epoch gets the same
    # augmentations as an uninterrupted one.
    return torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, num_workers=workers,
        pin_memory=torch.cuda.is_available(), worker_init_fn=_seed_worker if workers > 0 else None,
        timeout=cfg.train.loader_timeout if workers > 0 else 0,
    )


class FoldData:
    """Loaders for one fold, either of photos or of cached frozen-prefix features."""

    def __init__(self, cfg, folds: pd.DataFrame, fold: int, model: torch.nn.Module, device: torch.device):
        self.views = check_views(cfg.predict.tta)
        self.epoch_sizes = epoch_sizes(cfg)
        train_rows = folds[folds["fold"] != fold]
        valid_rows = folds[folds["fold"] == fold]
        self.valid_rows = valid_rows.reset_index(drop=True)
        if len(train_rows) == 0 or len(valid_rows) == 0:
            raise ValueError(f"Fold {fold} has no training or no validation photos; check data.n_folds")
        data_config = timm.data.resolve_data_config({}, model=model)
        self.mean, self.std = data_config["mean"], data_config["std"]
        size = cfg.data.image_size
        train_dir = Path(cfg.data.root) / "train"
        paths = [train_dir / name for name in folds["image"]]
        use_array = cfg.data.cache_images or cfg.train.cache_frozen
        cache_path = image_cache_path(paths, size, cfg.data.cache_dir) if use_array else None
        array = cached_images(paths, size, cfg.data.cache_dir, cfg.data.decode_workers, cache_path) if use_array else None
        self.images_key = cache_path.name if cache_path else ""

        self.views_cached = cfg.train.cache_frozen
        self.augment, self.transform_size = cfg.train.augment, size
        if cfg.train.cache_frozen:
            self._init_cached(cfg, model, device, array, paths, train_rows, valid_rows)
            return
        self.forward = model
        train_transform_ = train_transform(cfg.train.augment, size, self.mean, self.std)
        eval_transform_ = eval_transform(size, self.mean, self.std)
        if array is not None:
            train_set = PhotoDataset(train_transform_, train_rows["label"], array=_Rows(array, train_rows.index))
            valid_set = PhotoDataset(eval_transform_, valid_rows["label"], array=_Rows(array, valid_rows.index))
        else:
            train_set = PhotoDataset(train_transform_, train_rows["label"],
                                     paths=[paths[i] for i in train_rows.index], size=size)
            valid_set = PhotoDataset(eval_transform_, valid_rows["label"],
                                     paths=[paths[i] for i in valid_rows.index], size=size)
        # drop_last keeps a final batch of one photo away from BatchNorm in training.
        self.train_loader = _loader(train_set, cfg, cfg.train.batch_size, shuffle=True, drop_last=True)
        self.valid_loader = _loader(valid_set, cfg, cfg.train.eval_batch_size, shuffle=False)

    def start_epoch(self, epoch: int, seed: int) -> None:
        """Set the epoch's training image size and seed albumentations' own generator.

        Loader workers start anew every epoch, so they pick up the new transform.
        """
        dataset = self.train_loader.dataset
        if not self.views_cached:
            size = self.epoch_sizes[epoch]
            if size != self.transform_size:
                dataset.transform = train_transform(self.augment, size, self.mean, self.std)
                self.transform_size = size
        transform = getattr(dataset, "transform", None)
        if hasattr(transform, "set_random_seed"):
            transform.set_random_seed(seed)

    def _init_cached(self, cfg, model, device, array, paths, train_rows, valid_rows) -> None:
        cached_views = check_views(cfg.train.cached_views)
        missing = [view for view in self.views if view not in cached_views]
        if missing:
            raise ValueError(f"predict.tta views {missing} are not in train.cached_views {cached_views}; "
                             f"add them there so OOF predictions use the same views as the test set")
        if cfg.model.unfreeze_after > 0:
            raise ValueError("train.cache_frozen cannot be combined with model.unfreeze_after: "
                             "unfreezing would change the cached features")
        prefix_length = frozen_prefix_length_of(model)
        if prefix_length == 0:
            raise ValueError("train.cache_frozen needs frozen leading stages: set model.finetune=last or head")
        prefix, rest = split_model(model, prefix_length)
        features = prefix_features(prefix, array, self.images_key, cached_views, self.mean, self.std,
                                   cfg.data.cache_dir, device, cfg.train.eval_batch_size, cfg.train.channels_last)
        self.forward = rest
        view_index = [cached_views.index(view) for view in self.views]
        train_set = CachedViewsDataset(features, train_rows.index.to_numpy(), train_rows["label"], random_view=True)
        valid_set = CachedViewsDataset(features, valid_rows.index.to_numpy(), valid_rows["label"],
                                       random_view=False, view_index=view_index)
        self.train_loader = _loader(train_set, cfg, cfg.train.batch_size, shuffle=True, drop_last=True)
        self.valid_loader = _loader(valid_set, cfg, cfg.train.eval_batch_size, shuffle=False)


def epoch_sizes(cfg) -> list[int]:
    """Return the training image size of each epoch under progressive resizing.

    Raises ValueError for resize settings that cannot be used.
    """
    full, epochs = cfg.data.image_size, cfg.train.epochs
    start, share = cfg.train.resize_start, cfg.train.resize_epochs
    if not 0 < start <= 1:
        raise ValueError(f"train.resize_start must be in (0, 1], got {start}")
    if not 0 <= share <= 1:
        raise ValueError(f"train.resize_epochs must be in [0, 1], got {share}")
    ramp = round(share * epochs)
    if start == 1 or ramp == 0:
        return [full] * epochs
    if cfg.train.cache_frozen:
        raise ValueError("Progressive resizing (train.resize_start below 1) cannot be combined with "
                         "train.cache_frozen: the cached features are computed at data.image_size")
    first = start * full
    sizes = [max(1, round(first + (full - first) * epoch / ramp)) for epoch in range(ramp)]
    return sizes + [full] * (epochs - ramp)


def frozen_prefix_length_of(model: torch.nn.Module) -> int:
    return frozen_prefix_length(model_stages(model))


class _Rows:
    """A read-only row selection of an array, without copying it."""

    def __init__(self, array: np.ndarray, rows):
        self.array = array
        self.rows = np.asarray(rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.array[self.rows[index]]


def evaluate(forward, data: FoldData, cfg, device) -> dict:
    """Validation logits with TTA, their log loss and accuracy, and the training loss on the identity view."""
    logits = predict_logits(forward, data.valid_loader, data.views, device, cfg.train.channels_last,
                            cfg.train.amp, views_cached=data.views_cached)
    averaged = average_logits(logits, cfg.predict.average)
    labels = data.valid_rows["label"].to_numpy()
    probs = sigmoid(averaged)
    loss = float(bce_loss(torch.from_numpy(logits[:, 0]), torch.from_numpy(labels.astype(np.float32)),
                          cfg.train.label_smoothing))
    return {"logits": averaged, "loss": loss, "logloss": log_loss(labels, probs), "accuracy": accuracy(labels, probs)}


def build_fold_model(cfg) -> torch.nn.Module:
    model = build_model(cfg.model.name, num_classes=1, pretrained=config_lib.parse_pretrained(cfg.model.pretrained),
                        drop_rate=cfg.model.drop_rate)
    set_finetune_mode(model, cfg.model.finetune, cfg.model.trainable_stages)
    return model


def train_fold(cfg, fold: int) -> Path:
    """Train one fold (resuming when `last.pt` exists) and write its checkpoints, history and OOF."""
    if not 0 <= fold < cfg.data.n_folds:
        raise ValueError(f"fold={fold} is out of range: data.n_folds is {cfg.data.n_folds}")
    device = resolve_device(cfg.train.device)
    folds = load_or_make_folds(cfg)
    folder = prepare_run_dir(cfg, folds)
    fold_dir = folder / f"fold_{fold}"
    if fold_is_finished(cfg, fold):
        log.info("Fold %d is already finished (%s exists); skipping", fold, fold_dir / "oof.csv")
        return fold_dir
    fold_dir.mkdir(parents=True, exist_ok=True)

    seed_everything(cfg.train.seed + fold)
    log.info("Building model %s (pretrained: %s, finetune: %s) on %s", cfg.model.name, cfg.model.pretrained,
             cfg.model.finetune, device)
    model = build_fold_model(cfg)
    data = FoldData(cfg, folds, fold, model, device)
    model.to(device)
    if cfg.train.channels_last:
        model.to(memory_format=torch.channels_last)

    # With gradual unfreezing the optimiser contains every weight from the start. Frozen ones get no
    # gradient, so AdamW leaves them alone until they are unfrozen.
    if cfg.model.unfreeze_after > 0:
        frozen = [p for p in model.parameters() if not p.requires_grad]
        for parameter in frozen:
            parameter.requires_grad_(True)
        optimizer = build_optimizer(model, cfg)
        for parameter in frozen:
            parameter.requires_grad_(False)
    else:
        optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg, len(data.train_loader))
    ema = ModelEma(model, cfg.train.ema_decay) if cfg.train.ema else None
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(device, cfg.train.amp) else None

    state = {"epoch": 0, "best_logloss": float("inf"), "best_epoch": -1, "stale_epochs": 0,
             "wandb_id": f"{cfg.experiment}-fold{fold}-{secrets.token_hex(3)}"}
    history: list[dict] = []
    last_path = fold_dir / "last.pt"
    if last_path.is_file():
        checkpoint = load_checkpoint(last_path, map_location=device)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        if ema is not None and checkpoint.get("ema") is not None:
            ema.module.load_state_dict(checkpoint["ema"])
        if scaler is not None and checkpoint.get("scaler") is not None:
            scaler.load_state_dict(checkpoint["scaler"])
        state.update(checkpoint["state"])
        history = list(checkpoint["history"])
        log.info("Resuming fold %d after epoch %d from %s", fold, state["epoch"], last_path)

    tracker = Tracker(cfg, run_name=f"{cfg.experiment}-fold{fold}", run_id=state["wandb_id"],
                      config={**config_lib.to_dict(cfg), "fold": fold})
    try:
        _run_epochs(cfg, fold, model, data, optimizer, scheduler, ema, scaler, device, state, history,
                    fold_dir, tracker)
        oof = _write_fold_oof(cfg, fold, model, data, device, fold_dir)
        tracker.summary({"best_val_logloss": state["best_logloss"], "best_epoch": state["best_epoch"],
                         "oof_logloss": log_loss(oof["label"], oof["prob"])})
    except BaseException:
        tracker.finish(exit_code=1)
        raise
    tracker.finish()
    return fold_dir


def _run_epochs(cfg, fold, model, data, optimizer, scheduler, ema, scaler, device, state, history, fold_dir,
                tracker) -> None:
    first_epoch = state["epoch"]
    for epoch in range(first_epoch, cfg.train.epochs):
        if cfg.train.early_stopping and state["stale_epochs"] >= cfg.train.early_stopping:
            log.info("Early stopping fold %d: no better validation log loss for %d epochs",
                     fold, state["stale_epochs"])
            break
        if cfg.model.unfreeze_after and epoch == cfg.model.unfreeze_after:
            log.info("Unfreezing the whole network at epoch %d", epoch)
            unfreeze_all(model)

        # Seeding by epoch makes a resumed epoch draw the same augmentations as an uninterrupted one.
        epoch_seed = cfg.train.seed + 1000 * fold + epoch
        seed_everything(epoch_seed)
        data.start_epoch(epoch, epoch_seed)
        started = time.time()
        train_mode(model)
        train_loss = train_one_epoch(data.forward, data.train_loader, optimizer, scheduler, cfg, device, epoch,
                                     ema=ema, model=model, scaler=scaler)
        # The whole model goes to eval mode, not only `data.forward`: timm heads read the
        # top-level module's training flag for their dropout.
        model.eval()
        metrics = evaluate(data.forward, data, cfg, device)
        if not np.isfinite(metrics["logloss"]):
            raise NonFiniteLossError(epoch, None, metrics["logloss"], quantity="Validation log loss")
        source, best_model = "raw", model
        if ema is not None:
            ema_forward = ema.module
            if data.forward is not model:
                ema_forward = split_model(ema.module, frozen_prefix_length_of(model))[1]
            ema_metrics = evaluate(ema_forward, data, cfg, device)
            metrics["ema_logloss"] = ema_metrics["logloss"]
            if ema_metrics["logloss"] < metrics["logloss"]:
                source, best_model = "ema", ema.module
        score = metrics.get("ema_logloss", metrics["logloss"]) if source == "ema" else metrics["logloss"]

        row = {"epoch": epoch + 1, "train_loss": train_loss, "val_loss": metrics["loss"],
               "val_logloss": metrics["logloss"], "val_accuracy": metrics["accuracy"],
               "ema_logloss": metrics.get("ema_logloss", float("nan")),
               "lr": optimizer.param_groups[-1]["lr"], "seconds": time.time() - started}
        history.append(row)
        improved = score < state["best_logloss"]
        if improved:
            state.update(best_logloss=score, best_epoch=epoch + 1, stale_epochs=0)
            save_checkpoint({"model": best_model.state_dict(), "model_name": cfg.model.name, "num_classes": 1,
                             "image_size": cfg.data.image_size, "mean": list(data.mean), "std": list(data.std),
                             "epoch": epoch + 1, "val_logloss": score, "weights": source},
                            fold_dir / "best.pt")
        else:
            state["stale_epochs"] += 1
        state["epoch"] = epoch + 1
        save_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "ema": ema.module.state_dict() if ema else None,
                         "scaler": scaler.state_dict() if scaler else None, "state": dict(state),
                         "history": history}, fold_dir / "last.pt")
        with atomic_write(fold_dir / "history.csv") as handle:
            pd.DataFrame(history).to_csv(handle, index=False)

        tracker.log({f"fold{fold}/{key}": value for key, value in row.items() if key != "epoch"} | row, step=epoch + 1)
        train_size = data.epoch_sizes[epoch]
        size_note = f" at {train_size} px" if train_size != cfg.data.image_size else ""
        log.info("fold %d epoch %d/%d%s: train loss %.4f, val log loss %.4f%s, accuracy %.4f, %.0fs%s",
                 fold, epoch + 1, cfg.train.epochs, size_note, train_loss, metrics["logloss"],
                 f" (EMA {metrics['ema_logloss']:.4f})" if "ema_logloss" in metrics else "",
                 metrics["accuracy"], row["seconds"], " *" if improved else "")


def _write_fold_oof(cfg, fold, model, data: FoldData, device, fold_dir: Path) -> pd.DataFrame:
    best = load_checkpoint(fold_dir / "best.pt", map_location=device)
    model.load_state_dict(best["model"])
    model.eval()
    metrics = evaluate(data.forward, data, cfg, device)
    oof = data.valid_rows[["image", "label", "fold"]].assign(logit=metrics["logits"], prob=sigmoid(metrics["logits"]))
    with atomic_write(fold_dir / "oof.csv") as handle:
        oof.to_csv(handle, index=False)
    log.info("Fold %d finished: best epoch %d, OOF log loss %.4f, accuracy %.4f", fold, best["epoch"],
             metrics["logloss"], metrics["accuracy"])
    return oof
