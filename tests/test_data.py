"""Scanning photo folders, labels, duplicate-aware folds and the image cache."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from catsdogs.config import load_config
from catsdogs.data import (DataError, assign_folds, cached_images, label_from_name, load_or_make_folds,
                           resolve_duplicates, scan_test, scan_train)
from conftest import write_photo


@pytest.mark.parametrize("name, label", [("cat.1.jpg", 0), ("dog.12.jpg", 1), ("CAT.3.JPG", 0),
                                         ("Dog.7.Jpeg", 1), ("bird.1.jpg", None), ("catalog.jpg", None)])
def test_label_from_name(name, label):
    assert label_from_name(name) == label


def test_scan_train_ignores_non_photos(photo_root):
    (photo_root / "train" / ".DS_Store").write_bytes(b"\0\1")
    (photo_root / "train" / "Thumbs.db").write_bytes(b"\0\1")
    (photo_root / "train" / "notes.txt").write_text("hello")
    frame = scan_train(photo_root)
    assert len(frame) == 20
    assert frame["label"].sum() == 10


def test_scan_train_without_dogs_fails(photo_root):
    for path in (photo_root / "train").glob("dog.*"):
        path.unlink()
    with pytest.raises(DataError, match="No dog photos"):
        scan_train(photo_root)


def test_scan_train_missing_folder(tmp_path):
    with pytest.raises(DataError, match="Folder not found"):
        scan_train(tmp_path / "nowhere")


def test_scan_train_empty_folder(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match="No photos"):
        scan_train(tmp_path)


def test_test_ids_sorted_numerically(photo_root):
    frame = scan_test(photo_root)
    assert frame["id"].tolist() == [1, 2, 3, 10, 11, 100]


def test_test_name_not_integer_fails(photo_root):
    write_photo(photo_root / "test" / "abc.jpg", seed=1)
    with pytest.raises(DataError, match="abc.jpg"):
        scan_test(photo_root)


def _folds_of(root, tmp_path, **overrides):
    items = [f"data.root={root}", f"data.folds_dir={tmp_path / 'folds'}"] + [f"{k}={v}" for k, v in overrides.items()]
    return load_or_make_folds(load_config("cpu", items))


def test_folds_stratified_two_per_class(photo_root, tmp_path):
    folds = _folds_of(photo_root, tmp_path)
    for fold in range(5):
        rows = folds[folds["fold"] == fold]
        assert (rows["label"] == 0).sum() == 2
        assert (rows["label"] == 1).sum() == 2


def test_folds_reproducible_byte_for_byte(photo_root, tmp_path):
    _folds_of(photo_root, tmp_path / "a")
    _folds_of(photo_root, tmp_path / "b")
    first = (tmp_path / "a" / "folds" / "photos-k5-s42.csv").read_bytes()
    second = (tmp_path / "b" / "folds" / "photos-k5-s42.csv").read_bytes()
    assert first == second


def test_folds_depend_on_seed(photo_root, tmp_path):
    first = _folds_of(photo_root, tmp_path / "a")
    second = _folds_of(photo_root, tmp_path / "b", **{"data.seed": 7})
    assert not first["fold"].equals(second["fold"])


def test_folds_reused_until_photo_list_changes(photo_root, tmp_path):
    _folds_of(photo_root, tmp_path)
    write_photo(photo_root / "train" / "cat.99.jpg", seed=99)
    with pytest.raises(DataError, match="another photo list"):
        _folds_of(photo_root, tmp_path)


def test_identical_photos_share_fold(photo_root, tmp_path):
    shutil.copy(photo_root / "train" / "cat.3.jpg", photo_root / "train" / "cat.4.jpg")
    folds = _folds_of(photo_root, tmp_path).set_index("image")
    assert folds.loc["cat.3.jpg", "fold"] == folds.loc["cat.4.jpg", "fold"]


def test_conflicting_duplicates_dropped(photo_root, tmp_path):
    shutil.copy(photo_root / "train" / "cat.3.jpg", photo_root / "train" / "dog.3.jpg")
    folds = _folds_of(photo_root, tmp_path)
    assert "cat.3.jpg" not in set(folds["image"])
    assert "dog.3.jpg" not in set(folds["image"])
    assert len(folds) == 18


def test_conflicting_duplicates_kept_on_request(photo_root):
    shutil.copy(photo_root / "train" / "cat.3.jpg", photo_root / "train" / "dog.3.jpg")
    frame = resolve_duplicates(scan_train(photo_root), photo_root / "train", "keep", workers=1)
    assert len(frame) == 20


def test_bad_photos_skipped_with_names(photo_root, tmp_path, caplog):
    (photo_root / "train" / "cat.77.jpg").write_bytes(b"")
    (photo_root / "train" / "cat.9.jpg").write_text("hello")
    good = (photo_root / "train" / "dog.1.jpg").read_bytes()
    (photo_root / "train" / "dog.12.jpg").write_bytes(good[: len(good) // 2])
    folds = _folds_of(photo_root, tmp_path)
    assert {"cat.77.jpg", "cat.9.jpg", "dog.12.jpg"}.isdisjoint(folds["image"])
    assert len(folds) == 19
    for name in ("cat.77.jpg", "cat.9.jpg", "dog.12.jpg"):
        assert name in caplog.text


def test_bad_photos_error_policy(photo_root, tmp_path):
    (photo_root / "train" / "cat.77.jpg").write_bytes(b"")
    with pytest.raises(DataError, match="cat.77.jpg"):
        _folds_of(photo_root, tmp_path, **{"data.bad_images": "error"})


def test_too_few_photos_for_folds():
    frame = pd.DataFrame({"image": ["cat.1.jpg", "dog.1.jpg"], "label": [0, 1], "group": ["a", "b"]})
    with pytest.raises(DataError, match="Too few photos"):
        assign_folds(frame, n_folds=5, seed=0)


def test_image_cache_reused(photo_root, tmp_path):
    paths = sorted((photo_root / "train").glob("*.jpg"))
    first = cached_images(paths, 16, tmp_path / "cache", workers=2)
    second = cached_images(paths, 16, tmp_path / "cache", workers=2)
    assert first.shape == (20, 16, 16, 3)
    assert first.dtype == np.uint8
    assert isinstance(second, np.memmap)
    assert np.array_equal(first, second)


def test_check_data_script_names_bad_photos(photo_root):
    import subprocess
    import sys

    from conftest import REPO

    (photo_root / "train" / "cat.77.jpg").write_bytes(b"")
    (photo_root / "test" / "5.jpg").write_text("hello")
    command = [sys.executable, "src/check_data.py", "cpu", f"data.root={photo_root}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "cat.77.jpg: empty file" in result.stdout
    assert "5.jpg: not an image" in result.stdout
    strict = subprocess.run(command + ["data.bad_images=error"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert strict.returncode == 1
