"""The held-out check: the split, the data folder it lays out, and its scoring."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from catsdogs.data import DataError, scan_test, scan_train
from catsdogs.holdout import make_holdout, score_holdout, split_holdout
from catsdogs.submission import write_submission


def frame_of(groups_per_label: dict[int, list[str]]) -> pd.DataFrame:
    rows = [(f"{'dog' if label else 'cat'}.{i}.jpg", label, group)
            for label, groups in groups_per_label.items() for i, group in enumerate(groups)]
    return pd.DataFrame(rows, columns=["image", "label", "group"])


def test_split_is_stratified_and_repeatable():
    frame = frame_of({0: [f"c{i}" for i in range(30)], 1: [f"d{i}" for i in range(30)]})
    is_held_out = split_holdout(frame, 10, seed=3)
    assert is_held_out.sum() == 10
    assert frame.loc[is_held_out, "label"].tolist().count(1) == 5
    assert split_holdout(frame, 10, seed=3).equals(is_held_out)
    assert not split_holdout(frame, 10, seed=4).equals(is_held_out)


def test_split_keeps_identical_photos_together():
    # Each cat photo has a byte-identical twin: a held-out cat must take its twin along.
    frame = frame_of({0: [f"c{i // 2}" for i in range(20)], 1: [f"d{i}" for i in range(20)]})
    for seed in range(5):
        is_held_out = split_holdout(frame, 8, seed=seed)
        held_out_groups = set(frame.loc[is_held_out, "group"])
        assert set(frame.loc[~is_held_out, "group"]).isdisjoint(held_out_groups)
        assert is_held_out.sum() == 8


@pytest.mark.parametrize("count", [1, 40])
def test_split_rejects_impossible_counts(count):
    frame = frame_of({0: [f"c{i}" for i in range(20)], 1: [f"d{i}" for i in range(20)]})
    with pytest.raises(ValueError, match=f"holdout={count}"):
        split_holdout(frame, count, seed=0)


def test_holdout_folder_has_kaggle_layout(photo_root, tmp_path):
    out = make_holdout(photo_root, tmp_path / "held", count=6, seed=0)
    labels = pd.read_csv(out / "labels.csv")
    train = scan_train(out)
    test = scan_test(out)
    assert len(labels) == 6
    assert labels["label"].sum() == 3
    assert labels["id"].tolist() == [1, 2, 3, 4, 5, 6]
    assert sorted(test["id"]) == [1, 2, 3, 4, 5, 6]
    assert set(train["image"]).isdisjoint(labels["image"])
    assert len(train) == 20 - 6
    for photo_id, image in zip(labels["id"], labels["image"]):
        assert (out / "test" / f"{photo_id}.jpg").read_bytes() == (photo_root / "train" / image).read_bytes()
    sample = pd.read_csv(out / "sample_submission.csv")
    assert sample["id"].tolist() == labels["id"].tolist()


def test_holdout_folder_is_reused_and_checked(photo_root, tmp_path):
    out = make_holdout(photo_root, tmp_path / "held", count=6, seed=0)
    before = (out / "labels.csv").stat().st_mtime_ns
    make_holdout(photo_root, out, count=6, seed=0)
    assert (out / "labels.csv").stat().st_mtime_ns == before
    with pytest.raises(DataError, match="other held-out photos"):
        make_holdout(photo_root, out, count=8, seed=0)


def test_score_compares_holdout_with_cv(tmp_path):
    labels = pd.DataFrame({"id": [1, 2, 3, 4], "image": ["cat.1.jpg", "dog.1.jpg", "cat.2.jpg", "dog.2.jpg"],
                           "label": [0, 1, 0, 1]})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    write_submission(tmp_path / "submission.csv", [1, 2, 3, 4], [0.2, 0.8, 0.6, 0.9])
    (tmp_path / "cv.json").write_text(json.dumps({"logloss": 0.3, "accuracy": 0.9}))
    result = score_holdout(tmp_path / "submission.csv", tmp_path / "labels.csv", tmp_path / "cv.json",
                           tmp_path / "holdout.json")
    expected = -np.mean(np.log([0.8, 0.8, 0.4, 0.9]))
    assert result["holdout_logloss"] == pytest.approx(expected, rel=1e-6)
    assert result["holdout_accuracy"] == 0.75
    assert result["cv_logloss"] == 0.3
    assert json.loads((tmp_path / "holdout.json").read_text())["photos"] == 4


def test_score_names_missing_ids(tmp_path):
    pd.DataFrame({"id": [1, 2], "image": ["cat.1.jpg", "dog.1.jpg"], "label": [0, 1]}).to_csv(
        tmp_path / "labels.csv", index=False)
    write_submission(tmp_path / "submission.csv", [1], [0.3])
    (tmp_path / "cv.json").write_text(json.dumps({"logloss": 0.3, "accuracy": 0.9}))
    with pytest.raises(DataError, match="no prediction for 1 held-out ids"):
        score_holdout(tmp_path / "submission.csv", tmp_path / "labels.csv", tmp_path / "cv.json",
                      tmp_path / "holdout.json")


def test_duplicated_photo_never_split_across(photo_root, tmp_path):
    for index in range(3):
        shutil.copy(photo_root / "train" / f"cat.{index}.jpg", photo_root / "train" / f"cat.{50 + index}.jpg")
    out = make_holdout(photo_root, tmp_path / "held", count=10, seed=1)
    held_out = set(pd.read_csv(out / "labels.csv")["image"])
    for index in range(3):
        pair = {f"cat.{index}.jpg", f"cat.{50 + index}.jpg"}
        assert pair <= held_out or not pair & held_out


def test_half_made_folder_loses_stale_links(photo_root, tmp_path):
    out = tmp_path / "held"
    (out / "train").mkdir(parents=True)
    for index in range(10):  # links left by an interrupted split with other photos
        (out / "train" / f"cat.{index}.jpg").symlink_to(photo_root / "train" / f"cat.{index}.jpg")
    make_holdout(photo_root, out, count=6, seed=0)
    held_out = set(pd.read_csv(out / "labels.csv")["image"])
    assert held_out.isdisjoint(scan_train(out)["image"])
    assert len(scan_train(out)) == 14
