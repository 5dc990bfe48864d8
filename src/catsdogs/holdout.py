"""A held-out check of the whole pipeline: labelled photos left out of training, scored like the leaderboard.

`make_holdout` sets aside a stratified sample of the labelled photos and lays out a data folder
in Kaggle's layout: `train/` links to the other photos, `test/` links to the held-out ones
under numeric ids, with `sample_submission.csv` and `labels.csv` beside them. Training, CV,
calibration and prediction then run unchanged on that folder, and `score_holdout` compares the
submission with the held-out labels. A CV score far better than the held-out score is a leak.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from catsdogs.data import DataError, resolve_duplicates, scan_train
from catsdogs.io import atomic_write, write_text
from catsdogs.metrics import KAGGLE_EPS, accuracy, log_loss
from catsdogs.submission import read_submission

log = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"


def split_holdout(frame: pd.DataFrame, count: int, seed: int) -> pd.Series:
    """Return a boolean mask of `count` held-out photos, half of each class where possible.

    `frame` needs `image`, `label` and `group` columns. Photos of one group (byte-identical
    files) are held out together or not at all, so no copy of a held-out photo is trained on.
    """
    if not 2 <= count < len(frame):
        raise ValueError(f"holdout={count}: expected between 2 and {len(frame) - 1} photos "
                         f"(the data has {len(frame)} labelled photos)")
    rng = np.random.default_rng(seed)
    is_held_out = pd.Series(False, index=frame.index)
    per_class = {0: count // 2, 1: count - count // 2}
    for label, expected in per_class.items():
        groups = frame[frame["label"] == label].groupby("group").size()
        selected = 0
        for position in rng.permutation(len(groups)):
            if selected >= expected:
                break
            group, size = groups.index[position], int(groups.iloc[position])
            if selected + size > expected:
                continue
            is_held_out |= frame["group"] == group
            selected += size
        if selected < expected:
            raise ValueError(f"holdout={count}: could only set aside {selected} of {expected} "
                             f"{'dog' if label else 'cat'} photos")
    return is_held_out


def make_holdout(root: str | os.PathLike, out_root: str | os.PathLike, count: int, seed: int,
                 workers: int = 4) -> Path:
    """Lay out a data folder at `out_root` that holds out `count` photos of `root/train` as its test set.

    The folder is made of symbolic links, so it costs no disk space. An existing folder made with
    the same photos is reused, and one made from other photos raises DataError.
    """
    root, out_root = Path(root).resolve(), Path(out_root)
    train_dir = root / "train"
    frame = resolve_duplicates(scan_train(root), train_dir, "drop", workers)
    is_held_out = split_holdout(frame, count, seed)
    train, test = frame[~is_held_out], frame[is_held_out].reset_index(drop=True)
    test = test.assign(id=np.arange(1, len(test) + 1))

    labels_path = out_root / LABELS_FILE
    if labels_path.is_file():
        saved = pd.read_csv(labels_path)
        if saved["image"].tolist() != test["image"].tolist():
            raise DataError(f"{out_root} was made with other held-out photos than holdout={count} and seed {seed} "
                            f"select from {root}. Delete it or choose another runs.dir")
        log.info("Reusing the held-out data folder %s", out_root)
        return out_root

    # Without labels.csv the folder is new or was left half-made, possibly by another split, so
    # its old links go: a stale link in train/ could be a held-out photo.
    for name in ("train", "test"):
        folder = out_root / name
        folder.mkdir(parents=True, exist_ok=True)
        for entry in folder.iterdir():
            if entry.is_symlink():
                entry.unlink()
    for image in train["image"]:
        _link(train_dir / image, out_root / "train" / image)
    for image, photo_id in zip(test["image"], test["id"]):
        _link(train_dir / image, out_root / "test" / f"{photo_id}.jpg")
    with atomic_write(out_root / "sample_submission.csv") as handle:
        test.assign(label=0.5)[["id", "label"]].to_csv(handle, index=False)
    # labels.csv is written last: it marks the folder as complete.
    with atomic_write(labels_path) as handle:
        test[["id", "image", "label"]].to_csv(handle, index=False)
    log.info("Held out %d of %d photos (%d cats, %d dogs) in %s", len(test), len(frame),
             int((test["label"] == 0).sum()), int((test["label"] == 1).sum()), out_root)
    return out_root


def _link(target: Path, link: Path) -> None:
    if link.exists():
        link.unlink()
    link.symlink_to(target)


def score_holdout(submission_path: str | os.PathLike, labels_path: str | os.PathLike, cv_path: str | os.PathLike,
                  output_path: str | os.PathLike) -> dict:
    """Score a submission on the held-out labels, next to the run's CV score, and write the result as JSON."""
    labels = pd.read_csv(labels_path)
    ids, probs = read_submission(submission_path)
    submission = pd.DataFrame({"id": ids, "label": probs})
    scored = labels.merge(submission, on="id", how="left", suffixes=("", "_predicted"))
    missing = scored["label_predicted"].isna()
    if missing.any():
        raise DataError(f"{submission_path} has no prediction for {int(missing.sum())} held-out ids "
                        f"(first: {int(scored.loc[missing, 'id'].iloc[0])})")
    truth, predicted = scored["label"].to_numpy(), scored["label_predicted"].to_numpy()
    cv = json.loads(Path(cv_path).read_text())
    result = {
        "photos": len(scored),
        "holdout_logloss": log_loss(truth, predicted, eps=KAGGLE_EPS),
        "holdout_accuracy": accuracy(truth, predicted),
        "cv_logloss": cv["logloss"],
        "cv_accuracy": cv["accuracy"],
        "submission": str(submission_path),
    }
    write_text(output_path, json.dumps(result, indent=2) + "\n")
    return result
