"""The real scripts on a small slice of the shared photos: folds, fold training, CV, submission."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from conftest import REPO, SHARED_DATA

pytestmark = pytest.mark.slow

CATS_AND_DOGS = 12  # photos of each class in the slice
TEST_IDS = [1, 2, 3, 10, 11, 100]


@pytest.fixture(scope="module")
def data_slice(tmp_path_factory):
    """A data root of links to a few shared photos, laid out like Kaggle's download."""
    if not (SHARED_DATA / "train").is_dir():
        pytest.skip(f"shared photos not found at {SHARED_DATA}")
    root = tmp_path_factory.mktemp("slice") / "dogs-vs-cats"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    for kind in ("cat", "dog"):
        for number in range(1001, 1001 + CATS_AND_DOGS):
            (root / "train" / f"{kind}.{number}.jpg").symlink_to(SHARED_DATA / "train" / f"{kind}.{number}.jpg")
    for test_id in TEST_IDS:
        (root / "test" / f"{test_id}.jpg").symlink_to(SHARED_DATA / "test" / f"{test_id}.jpg")
    pd.DataFrame({"id": TEST_IDS, "label": 0.5}).to_csv(root / "sample_submission.csv", index=False)
    return root


def run(command: list[str], work: os.PathLike) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "WANDB_SILENT": "true"}
    env.pop("WANDB_MODE", None)
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def overrides(root, work) -> list[str]:
    return [f"data.root={root}", "data.n_folds=2", "train.epochs=1", f"runs.dir={work}/runs",
            f"data.folds_dir={work}/folds", f"data.cache_dir={work}/cache", f"wandb.dir={work}/wandb",
            f"predict.output_dir={work}/submissions", "train.batch_size=8", "train.eval_batch_size=8"]


def check_submission_file(path):
    submission = pd.read_csv(path)
    assert list(submission.columns) == ["id", "label"]
    assert submission["id"].tolist() == TEST_IDS
    assert submission["label"].between(0, 1, inclusive="neither").all()


def test_cpu_default_run_end_to_end(data_slice, tmp_path):
    """No config on a machine without a GPU: the CPU experiment, named on the first line."""
    args = overrides(data_slice, tmp_path) + ["data.image_size=64", "wandb.mode=offline"]
    trained = run(["bash", "scripts/train_folds.sh", *args], tmp_path)
    assert trained.stdout.splitlines()[0].startswith("No GPU found: running the CPU experiment")
    assert "CV cpu: log loss" in trained.stdout

    run_dir = tmp_path / "runs" / "cpu"
    cv = json.loads((run_dir / "cv.json").read_text())
    assert {"logloss", "accuracy", "folds", "calibration"} <= set(cv)
    assert len(cv["folds"]) == 2
    oof = pd.read_csv(run_dir / "oof.csv")
    assert len(oof) == 2 * CATS_AND_DOGS
    assert {"image", "label", "fold", "prob"} <= set(oof.columns)
    for fold in (0, 1):
        history = pd.read_csv(run_dir / f"fold_{fold}" / "history.csv")
        assert len(history) == 1
        assert (run_dir / f"fold_{fold}" / "best.pt").is_file()
        assert (run_dir / f"fold_{fold}" / "last.pt").is_file()
    assert any((tmp_path / "wandb" / "wandb").glob("offline-run-*"))

    predicted = run([sys.executable, "src/predict.py", *args], tmp_path)
    assert "Wrote" in predicted.stdout
    check_submission_file(tmp_path / "submissions" / "submission.csv")
    named = list((tmp_path / "submissions").glob("cpu-cv*.csv"))
    assert len(named) == 1

    again = run(["bash", "scripts/train_folds.sh", *args], tmp_path)
    assert again.stdout.count("already finished") == 2


def test_scratch_resnet_and_blend(data_slice, tmp_path):
    """A hand-written ResNet from scratch, then a blend of it with a second run."""
    args = overrides(data_slice, tmp_path) + ["data.image_size=32", "wandb.mode=disabled"]
    run(["bash", "scripts/train_folds.sh", "cpu_scratch", *args], tmp_path)
    run(["bash", "scripts/train_folds.sh", "lenet", *args], tmp_path)
    blended = run([sys.executable, "src/predict.py", f"{tmp_path}/runs/cpu_scratch", f"{tmp_path}/runs/lenet",
                   *args], tmp_path)
    assert "Blend CV log loss" in blended.stdout + blended.stderr
    check_submission_file(tmp_path / "submissions" / "submission.csv")
    assert len(list((tmp_path / "submissions").glob("blend-cpu_scratch+lenet-cv*.csv"))) == 1


def test_holdout_check_scores_unseen_photos(data_slice, tmp_path):
    """The held-out photos are the test set of a run trained without them, and get scored."""
    args = overrides(data_slice, tmp_path) + ["data.image_size=64", "wandb.mode=offline", "holdout=6"]
    checked = run([sys.executable, "src/holdout_check.py", "cpu", *args], tmp_path)
    assert "Held-out check cpu-holdout6: CV log loss" in checked.stdout

    base = tmp_path / "runs" / "holdout"
    result = json.loads((base / "cpu-holdout6" / "holdout.json").read_text())
    assert result["photos"] == 6
    assert 0 < result["holdout_logloss"] < 5
    trained_on = set(pd.read_csv(base / "cpu-holdout6" / "oof.csv")["image"])
    held_out = set(pd.read_csv(base / "data" / "dogs-vs-cats-holdout6" / "labels.csv")["image"])
    assert len(trained_on) == 2 * CATS_AND_DOGS - 6
    assert trained_on.isdisjoint(held_out)
    assert not (tmp_path / "runs" / "cpu").exists()
    assert any((base / "wandb" / "wandb").glob("offline-run-*"))
    assert not (tmp_path / "wandb").exists()
