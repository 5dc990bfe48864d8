"""Photo folders, labels, folds, the decoded-image cache and the Dataset.

Kaggle's layout: `<root>/train/{cat,dog}.<n>.jpg` (the label is in the name) and
`<root>/test/<id>.jpg`. Nothing is ever written into the data folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import StratifiedKFold

from catsdogs.images import BadImageError, find_bad_images, is_photo_name, read_rgb
from catsdogs.io import atomic_write, write_text
from catsdogs.submission import parse_test_id

log = logging.getLogger(__name__)

LABELS = {"cat": 0, "dog": 1}


class DataError(ValueError):
    """A data folder that cannot be used as it is."""


def label_from_name(name: str) -> int | None:
    """Return 0 for `cat.*`, 1 for `dog.*` (any case), None for any other name."""
    prefix = name.split(".", 1)[0].lower()
    return LABELS.get(prefix) if "." in name else None


def _list_photos(folder: Path) -> tuple[list[str], int]:
    if not folder.is_dir():
        raise DataError(f"Folder not found: {folder}. Set data.root to the folder that contains train/ and test/.")
    names = sorted(entry.name for entry in os.scandir(folder) if entry.is_file())
    photos = [name for name in names if is_photo_name(name)]
    ignored = len(names) - len(photos)
    if ignored:
        log.info("Ignored %d files in %s that are not photos", ignored, folder)
    if not photos:
        raise DataError(f"No photos in {folder}: expected .jpg, .jpeg, .png, .bmp or .webp files")
    return photos, ignored


def scan_train(root: str | os.PathLike) -> pd.DataFrame:
    """List `<root>/train` as a DataFrame with columns `image` and `label`, sorted by name."""
    folder = Path(root) / "train"
    photos, _ = _list_photos(folder)
    labels = [label_from_name(name) for name in photos]
    unlabelled = [name for name, label in zip(photos, labels) if label is None]
    if unlabelled:
        log.warning("Skipped %d photos in %s whose name starts with neither cat. nor dog. (first: %s)",
                    len(unlabelled), folder, unlabelled[0])
    frame = pd.DataFrame({"image": photos, "label": labels}).dropna()
    frame["label"] = frame["label"].astype(int)
    counts = frame["label"].value_counts()
    for name, label in LABELS.items():
        if counts.get(label, 0) == 0:
            raise DataError(f"No {name} photos in {folder}: training needs both cat.* and dog.* photos")
    return frame.reset_index(drop=True)


def scan_test(root: str | os.PathLike) -> pd.DataFrame:
    """List `<root>/test` as a DataFrame with `image` and integer `id`, sorted by id."""
    folder = Path(root) / "test"
    photos, _ = _list_photos(folder)
    try:
        ids = [parse_test_id(name) for name in photos]
    except ValueError as exc:
        raise DataError(f"{exc} (in {folder})") from exc
    frame = pd.DataFrame({"image": photos, "id": ids}).sort_values("id", kind="stable")
    duplicated = frame["id"].duplicated()
    if duplicated.any():
        raise DataError(f"Two test photos in {folder} share id {frame['id'][duplicated].iloc[0]}")
    return frame.reset_index(drop=True)


def drop_bad_photos(frame: pd.DataFrame, folder: Path, policy: str, workers: int) -> pd.DataFrame:
    """Decode every photo once; skip the unusable ones with a warning, or raise when policy is `error`."""
    bad = find_bad_images([folder / name for name in frame["image"]], workers=workers)
    if not bad:
        return frame
    listing = "\n".join(f"  {path.name}: {reason}" for path, reason in bad)
    if policy == "error":
        raise DataError(f"{len(bad)} photos in {folder} cannot be used (data.bad_images=error):\n{listing}")
    log.warning("Skipping %d photos in %s that cannot be used:\n%s", len(bad), folder, listing)
    bad_names = {path.name for path, _ in bad}
    return frame[~frame["image"].isin(bad_names)].reset_index(drop=True)


def file_digest(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.blake2b(handle.read(), digest_size=16).hexdigest()


def resolve_duplicates(frame: pd.DataFrame, folder: Path, policy: str, workers: int) -> pd.DataFrame:
    """Add a `group` column (the file digest) and handle duplicates labelled both ways.

    Byte-identical photos share a group, so folds keep them together. A group with both
    labels is dropped whole (policy `drop`) or kept (`keep`), and reported by name.
    """
    with ThreadPoolExecutor(max(1, workers)) as pool:
        digests = list(pool.map(file_digest, [folder / name for name in frame["image"]]))
    frame = frame.assign(group=digests)
    sizes = frame.groupby("group")["image"].transform("size")
    if (sizes > 1).any():
        log.info("Found %d byte-identical photos in %d groups; each group stays in one fold",
                 int((sizes > 1).sum()), frame.loc[sizes > 1, "group"].nunique())
    label_counts = frame.groupby("group")["label"].transform("nunique")
    conflicting = frame[label_counts > 1]
    if len(conflicting):
        names = ", ".join(conflicting["image"])
        if policy == "drop":
            log.warning("Dropping %d identical photos labelled both cat and dog: %s", len(conflicting), names)
            frame = frame[label_counts == 1]
        else:
            log.warning("Keeping %d identical photos labelled both cat and dog: %s", len(conflicting), names)
    return frame.reset_index(drop=True)


def assign_folds(frame: pd.DataFrame, n_folds: int, seed: int) -> pd.DataFrame:
    """Assign stratified folds by group, so identical photos share a fold.

    Each group is stratified by its majority label. Same input and seed give the same folds.
    """
    groups = frame.groupby("group", sort=True)["label"].agg(lambda labels: int(labels.mean() >= 0.5))
    if groups.value_counts().min() < n_folds:
        raise DataError(f"Too few photos for {n_folds} folds: each class needs at least {n_folds} "
                        f"distinct photos (cats: {int((groups == 0).sum())}, dogs: {int((groups == 1).sum())})")
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    group_fold = pd.Series(-1, index=groups.index)
    for fold, (_, valid_index) in enumerate(splitter.split(np.zeros(len(groups)), groups.to_numpy())):
        group_fold.iloc[valid_index] = fold
    result = frame.assign(fold=frame["group"].map(group_fold).astype(int))
    return result[["image", "label", "fold", "group"]]


def photo_list_digest(names: Sequence[str]) -> str:
    return hashlib.blake2b("\n".join(sorted(names)).encode(), digest_size=8).hexdigest()


def folds_path(cfg) -> Path:
    data_name = Path(cfg.data.root).resolve().name or "data"
    return Path(cfg.data.folds_dir) / f"{data_name}-k{cfg.data.n_folds}-s{cfg.data.seed}.csv"


def load_or_make_folds(cfg) -> pd.DataFrame:
    """Return the folds of `cfg.data.root`, made once and reused while the photo list is the same."""
    path = folds_path(cfg)
    train_dir = Path(cfg.data.root) / "train"
    scanned = scan_train(cfg.data.root)
    digest = photo_list_digest(scanned["image"])
    meta_path = path.with_suffix(".json")
    if path.is_file() and meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        if meta.get("photo_list") == digest:
            log.info("Reusing folds %s", path)
            return pd.read_csv(path)
        raise DataError(f"{path} was made from another photo list than {train_dir} contains now "
                        f"({meta.get('photos')} photos then, {len(scanned)} now). "
                        f"Delete {path} and {meta_path} to make new folds.")

    log.info("Making %d folds of %d photos in %s (seed %d)", cfg.data.n_folds, len(scanned), train_dir, cfg.data.seed)
    usable = drop_bad_photos(scanned, train_dir, cfg.data.bad_images, cfg.data.decode_workers)
    usable = resolve_duplicates(usable, train_dir, cfg.data.label_conflicts, cfg.data.decode_workers)
    folds = assign_folds(usable, cfg.data.n_folds, cfg.data.seed)
    with atomic_write(path) as handle:
        folds.to_csv(handle, index=False)
    meta = {"photo_list": digest, "photos": len(scanned), "used": len(folds),
            "skipped": len(scanned) - len(folds), "n_folds": cfg.data.n_folds, "seed": cfg.data.seed,
            "root": str(Path(cfg.data.root).resolve())}
    write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    log.info("Wrote %s: %d photos used, %d skipped", path, len(folds), len(scanned) - len(folds))
    return folds


def load_resized(path: Path, size: int) -> np.ndarray:
    """Decode a photo to RGB and resize it to size x size (area filter when shrinking)."""
    image = read_rgb(path)
    if image.shape[:2] == (size, size):
        return image
    shrink = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def image_cache_path(paths: Sequence[Path], size: int, cache_dir: str | os.PathLike) -> Path:
    """Return the cache file of these photos at this size, keyed by their paths and file sizes."""
    key_source = "\n".join(f"{Path(p).resolve()}:{Path(p).stat().st_size}" for p in paths) + f"\n{size}"
    key = hashlib.blake2b(key_source.encode(), digest_size=8).hexdigest()
    folder_name = f"{Path(paths[0]).parent.parent.name}-{Path(paths[0]).parent.name}" if paths else "empty"
    return Path(cache_dir) / f"images-{folder_name}-{size}px-{key}.npy"


def cached_images(paths: Sequence[Path], size: int, cache_dir: str | os.PathLike, workers: int = 4,
                  path: Path | None = None) -> np.ndarray:
    """Return all photos resized to size x size as one uint8 array [N, size, size, 3].

    The array is kept as a .npy file under `cache_dir`, keyed by the folder, the photo
    names and their sizes on disk, and memory-mapped on reuse.
    """
    paths = [Path(p) for p in paths]
    # Callers that need the cache file's name pass the path they computed, which saves a stat of every photo.
    path = path or image_cache_path(paths, size, cache_dir)
    if path.is_file():
        return np.load(path, mmap_mode="r")

    log.info("Decoding %d photos into %s", len(paths), path)
    array = np.empty((len(paths), size, size, 3), dtype=np.uint8)

    def fill(index: int) -> None:
        array[index] = load_resized(paths[index], size)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(fill, range(len(paths))))
    with atomic_write(path, "wb") as handle:
        np.save(handle, array)
    return array


class PhotoDataset(torch.utils.data.Dataset):
    """Photos as (image tensor, label) pairs, from files or from a decoded array.

    `transform` is an albumentations pipeline whose first step resizes to the model's
    size; photos from `array` are already at that size.
    """

    def __init__(self, transform: Callable, labels: Sequence[float], paths: Sequence[Path] | None = None,
                 array: np.ndarray | None = None, size: int | None = None):
        if (paths is None) == (array is None):
            raise ValueError("PhotoDataset needs exactly one of paths or array")
        self.paths = list(paths) if paths is not None else None
        self.array = array
        self.size = size
        self.labels = np.asarray(labels, dtype=np.float32)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self.array is not None:
            image = np.asarray(self.array[index])
        else:
            try:
                image = load_resized(self.paths[index], self.size)
            except BadImageError as exc:
                raise DataError(f"Photo became unreadable during the run: {exc}") from exc
        tensor = self.transform(image=image)["image"]
        return tensor, torch.tensor(self.labels[index])
