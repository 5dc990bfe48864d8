"""Training one fold on tiny photos: outputs, resume, frozen-feature cache and numerics."""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
import pytest
import torch

from catsdogs import training
from catsdogs.config import load_config
from catsdogs.engine import NonFiniteLossError
from catsdogs.features import frozen_prefix_length, split_model
from catsdogs.io import UnsafeCheckpointError, atomic_write, load_checkpoint, save_checkpoint
from catsdogs.models import build_model, model_stages, set_finetune_mode
from conftest import write_photo


def tiny_config(root, tmp_path, *extra):
    return load_config("cpu_scratch", [
        f"data.root={root}", f"runs.dir={tmp_path}/runs", f"data.folds_dir={tmp_path}/folds",
        f"data.cache_dir={tmp_path}/cache", "wandb.mode=disabled", "data.image_size=16", "data.n_folds=2",
        "model.name=hand/lenet", "train.epochs=2", "train.batch_size=8", "train.eval_batch_size=8",
        "train.num_workers=0", "train.augment=light", "train.resize_start=1.0", *extra])


def test_fold_writes_every_output(photo_root, tmp_path):
    cfg = tiny_config(photo_root, tmp_path)
    fold_dir = training.train_fold(cfg, 0)
    history = pd.read_csv(fold_dir / "history.csv")
    oof = pd.read_csv(fold_dir / "oof.csv")
    folds = pd.read_csv(tmp_path / "runs" / "cpu_scratch" / "folds.csv")
    assert history["epoch"].tolist() == [1, 2]
    assert {"train_loss", "val_loss", "val_logloss", "val_accuracy", "lr", "seconds"} <= set(history.columns)
    assert len(oof) == (folds["fold"] == 0).sum()
    assert oof["prob"].between(0, 1).all()
    assert (tmp_path / "runs" / "cpu_scratch" / "config.yaml").is_file()
    assert load_checkpoint(fold_dir / "best.pt")["model_name"] == "hand/lenet"


def test_batchnorm_head_with_odd_fold_size(tmp_path):
    """65 training photos and batch size 32 leave a last batch of 1, which drop_last keeps out."""
    root = tmp_path / "photos"
    for index in range(65):
        write_photo(root / "train" / f"cat.{index}.jpg", seed=index)
        write_photo(root / "train" / f"dog.{index}.jpg", seed=500 + index)
    cfg = tiny_config(root, tmp_path, "model.name=hand/resnet18", "train.batch_size=32", "train.epochs=1",
                      "data.image_size=32")
    fold_dir = training.train_fold(cfg, 1)
    oof = pd.read_csv(fold_dir / "oof.csv")
    assert len(oof) == 65


@pytest.mark.parametrize("extra", [(), ("train.resize_start=0.5", "train.resize_epochs=1", "train.augment=medium",
                                         "model.name=hand/resnet18")])
def test_killed_fold_resumes_to_same_result(photo_root, tmp_path, monkeypatch, extra):
    clean = training.train_fold(tiny_config(photo_root, tmp_path / "clean", *extra), 0)

    original = training.evaluate
    calls = {"count": 0}

    def evaluate_then_die(*args, **kwargs):
        calls["count"] += 1
        if calls["count"] == 2:
            raise KeyboardInterrupt("simulated kill in epoch 2")
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate", evaluate_then_die)
    cfg = tiny_config(photo_root, tmp_path / "killed", *extra)
    with pytest.raises(KeyboardInterrupt):
        training.train_fold(cfg, 0)
    fold_dir = tmp_path / "killed" / "runs" / "cpu_scratch" / "fold_0"
    assert load_checkpoint(fold_dir / "last.pt")["state"]["epoch"] == 1
    assert not (fold_dir / "oof.csv").exists()

    monkeypatch.setattr(training, "evaluate", original)
    resumed = training.train_fold(cfg, 0)
    clean_oof = pd.read_csv(clean / "oof.csv")
    resumed_oof = pd.read_csv(resumed / "oof.csv")
    assert clean_oof["image"].tolist() == resumed_oof["image"].tolist()
    np.testing.assert_allclose(clean_oof["prob"], resumed_oof["prob"], rtol=1e-5, atol=1e-6)
    assert len(pd.read_csv(resumed / "history.csv")) == 2


def test_progressive_resizing_trains_small_then_validates_full_size(photo_root, tmp_path, monkeypatch):
    sizes = {"train": [], "valid": []}
    original_train, original_evaluate = training.train_one_epoch, training.evaluate

    def recording_train(forward, loader, *args, **kwargs):
        sizes["train"].append({tuple(images.shape[-2:]) for images, _ in loader})
        return original_train(forward, loader, *args, **kwargs)

    def recording_evaluate(forward, data, *args, **kwargs):
        sizes["valid"].append({tuple(images.shape[-2:]) for images, _ in data.valid_loader})
        return original_evaluate(forward, data, *args, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", recording_train)
    monkeypatch.setattr(training, "evaluate", recording_evaluate)
    cfg = tiny_config(photo_root, tmp_path, "train.epochs=4", "train.resize_start=0.5", "train.resize_epochs=0.5",
                      "train.augment=medium", "model.name=hand/resnet18")
    training.train_fold(cfg, 0)
    assert sizes["train"] == [{(8, 8)}, {(12, 12)}, {(16, 16)}, {(16, 16)}]
    assert all(seen == {(16, 16)} for seen in sizes["valid"])


@pytest.mark.parametrize("extra, sizes", [
    (("train.epochs=12", "data.image_size=64", "train.resize_start=0.75", "train.resize_epochs=0.67"),
     [48, 50, 52, 54, 56, 58, 60, 62, 64, 64, 64, 64]),
    (("train.epochs=3", "train.resize_start=0.5", "train.resize_epochs=0.1"), [16, 16, 16]),
    (("train.epochs=2", "train.resize_start=1.0"), [16, 16]),
])
def test_progressive_sizes_grow_linearly(photo_root, tmp_path, extra, sizes):
    assert training.epoch_sizes(tiny_config(photo_root, tmp_path, *extra)) == sizes


@pytest.mark.parametrize("extra, message", [
    (("train.resize_start=0",), "resize_start must be in"),
    (("train.resize_start=0.5", "train.resize_epochs=1.5"), "resize_epochs must be in"),
    (("train.resize_start=0.5", "model.name=hand/resnet18", "model.finetune=last", "train.cache_frozen=true"),
     "cannot be combined with train.cache_frozen"),
])
def test_unusable_resize_settings_rejected(photo_root, tmp_path, extra, message):
    with pytest.raises(ValueError, match=message):
        training.train_fold(tiny_config(photo_root, tmp_path, *extra), 0)


def test_finished_fold_is_skipped(photo_root, tmp_path):
    cfg = tiny_config(photo_root, tmp_path, "train.epochs=1")
    fold_dir = training.train_fold(cfg, 1)
    before = (fold_dir / "oof.csv").stat().st_mtime_ns
    training.train_fold(cfg, 1)
    assert (fold_dir / "oof.csv").stat().st_mtime_ns == before


def test_changed_config_rejected_for_same_run(photo_root, tmp_path):
    training.train_fold(tiny_config(photo_root, tmp_path, "train.epochs=1"), 0)
    with pytest.raises(training.RunMismatchError, match="train.lr"):
        training.train_fold(tiny_config(photo_root, tmp_path, "train.epochs=1", "train.lr=0.5"), 1)


def test_nan_loss_stops_fold_keeps_checkpoint(photo_root, tmp_path, monkeypatch):
    cfg = tiny_config(photo_root, tmp_path)
    original = training.train_one_epoch

    def poisoned(forward, loader, optimizer, scheduler, cfg, device, epoch, **kwargs):
        if epoch == 1:
            raise NonFiniteLossError(epoch, 3, float("nan"))
        return original(forward, loader, optimizer, scheduler, cfg, device, epoch, **kwargs)

    monkeypatch.setattr(training, "train_one_epoch", poisoned)
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 3"):
        training.train_fold(cfg, 0)
    fold_dir = tmp_path / "runs" / "cpu_scratch" / "fold_0"
    assert load_checkpoint(fold_dir / "last.pt")["state"]["epoch"] == 1
    assert (fold_dir / "best.pt").is_file()


def test_diverged_weights_stop_fold(photo_root, tmp_path):
    """One step at a huge learning rate: the validation after it is the first place NaN shows."""
    cfg = tiny_config(photo_root, tmp_path, "train.lr=1e30", "train.epochs=2")
    with pytest.raises(NonFiniteLossError, match="at epoch 0"):
        training.train_fold(cfg, 0)
    assert not (tmp_path / "runs" / "cpu_scratch" / "fold_0" / "oof.csv").exists()


def test_cached_features_train_like_full_model(photo_root, tmp_path):
    cfg = tiny_config(photo_root, tmp_path, "model.name=hand/resnet18", "model.finetune=last",
                      "model.trainable_stages=1", "train.cache_frozen=true", "data.image_size=32",
                      "train.epochs=1", "train.augment=none")
    fold_dir = training.train_fold(cfg, 0)
    assert any((tmp_path / "cache").glob("features-*.npy"))
    assert len(pd.read_csv(fold_dir / "oof.csv")) == 10


def test_split_model_composes_to_model():
    torch.manual_seed(0)
    model = build_model("hand/resnet18", num_classes=1).eval()
    set_finetune_mode(model, "last", trainable_stages=1)
    prefix_length = frozen_prefix_length(model_stages(model))
    prefix, rest = split_model(model, prefix_length)
    inputs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(rest(prefix(inputs)), model(inputs), atol=1e-6)
    assert prefix_length == 4


def test_checkpoint_with_pickled_objects_rejected(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"lr": np.float64(0.1), "args": argparse.Namespace(lr=0.1)}, path)
    with pytest.raises(UnsafeCheckpointError, match="unsafe.pt"):
        load_checkpoint(path)


def test_own_checkpoint_round_trips(tmp_path):
    path = tmp_path / "ok.pt"
    state = {"model": {"w": torch.ones(2)}, "state": {"epoch": 3, "best_logloss": 0.2}, "history": [{"a": 1.0}]}
    save_checkpoint(state, path)
    loaded = load_checkpoint(path)
    assert loaded["state"] == {"epoch": 3, "best_logloss": 0.2}
    assert torch.equal(loaded["model"]["w"], torch.ones(2))


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    path = tmp_path / "oof.csv"
    path.write_text("old\n")
    with pytest.raises(RuntimeError):
        with atomic_write(path) as handle:
            handle.write("partial")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["oof.csv"]


class BatchNormHeadNet(torch.nn.Module):
    """A small network whose head has BatchNorm1d, which fails on a training batch of one."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.fc = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                      torch.nn.Linear(8, 1))

    def forward(self, inputs):
        return self.fc(self.body(inputs))


def test_batchnorm1d_head_last_batch_of_one(tmp_path, monkeypatch):
    """130 photos in 2 folds: 65 training photos, batch size 32, so the last batch would hold one."""
    root = tmp_path / "photos"
    for index in range(65):
        write_photo(root / "train" / f"cat.{index}.jpg", seed=index)
        write_photo(root / "train" / f"dog.{index}.jpg", seed=500 + index)
    monkeypatch.setattr(training, "build_fold_model", lambda cfg: BatchNormHeadNet())
    cfg = tiny_config(root, tmp_path, "train.batch_size=32", "train.epochs=1")
    fold_dir = training.train_fold(cfg, 0)
    assert len(pd.read_csv(fold_dir / "oof.csv")) == 65


def test_gradual_unfreezing_trains_backbone_later(photo_root, tmp_path):
    cfg = tiny_config(photo_root, tmp_path, "model.name=hand/resnet18", "model.finetune=head",
                      "model.unfreeze_after=1", "train.epochs=2", "data.image_size=32", "train.augment=none")
    torch.manual_seed(cfg.train.seed)
    initial = training.build_fold_model(cfg).state_dict()
    fold_dir = training.train_fold(cfg, 0)
    trained = load_checkpoint(fold_dir / "last.pt")["model"]
    assert not torch.equal(trained["conv1.weight"], initial["conv1.weight"])
    assert not torch.equal(trained["fc.weight"], initial["fc.weight"])


def test_sigkilled_training_resumes(photo_root, tmp_path):
    """A real SIGKILL while the second epoch runs; the same command then finishes the fold."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import REPO

    args = [f"data.root={photo_root}", f"runs.dir={tmp_path}/runs", f"data.folds_dir={tmp_path}/folds",
            f"data.cache_dir={tmp_path}/cache", "wandb.mode=disabled", "data.image_size=16", "data.n_folds=2",
            "model.name=hand/lenet", "train.epochs=15", "train.batch_size=2", "train.num_workers=0",
            "train.resize_start=1.0", "fold=0"]
    command = [sys.executable, "src/train.py", "cpu_scratch", *args]
    last = tmp_path / "runs" / "cpu_scratch" / "fold_0" / "last.pt"
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    epochs_done = load_checkpoint(last)["state"]["epoch"]
    assert 1 <= epochs_done < 15

    resumed = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert f"Resuming fold 0 after epoch {epochs_done}" in resumed.stdout
    history = pd.read_csv(last.parent / "history.csv")
    assert history["epoch"].tolist() == list(range(1, 16))
    assert len(pd.read_csv(last.parent / "oof.csv")) == 10


@pytest.mark.parametrize("total_steps", range(1, 11))
def test_one_cycle_schedule_runs_for_any_step_count(photo_root, tmp_path, total_steps):
    from catsdogs.engine import build_scheduler

    cfg = tiny_config(photo_root, tmp_path, "train.schedule=onecycle", f"train.epochs={total_steps}", "train.lr=0.1")
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    scheduler = build_scheduler(optimizer, cfg, steps_per_epoch=1)
    rates = [optimizer.param_groups[0]["lr"]]
    for _ in range(total_steps):
        optimizer.step()
        scheduler.step()
        rates.append(optimizer.param_groups[0]["lr"])
    assert all(0 < rate <= 0.1 for rate in rates)
    if total_steps >= 2:
        assert rates[0] == pytest.approx(0.1 / 25)
    if total_steps >= 3:
        used = rates[:total_steps]  # the last entry is the rate after the final step
        assert max(used) == pytest.approx(0.1, rel=0.05)
        assert used[-1] < 0.1 / 25
