"""Score the whole pipeline on labelled photos left out of its training: a check that CV is honest.

Usage: python src/holdout_check.py [CONFIG] [key=value ...] [holdout=1000]

Sets aside `holdout` labelled photos of data.root (half cats, half dogs, chosen with
data.seed), then runs the README's two commands on the rest: scripts/train_folds.sh and
src/predict.py, with the held-out photos as the test set. Prints the run's CV log loss next
to the held-out log loss and writes both to runs/holdout/<experiment>-holdout<N>/holdout.json.
The data folder is made of links under runs/holdout/data/. The check's runs, W&B runs and
submissions stay under runs/holdout/, apart from the real ones.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from catsdogs.cli import config_from_args, run_main
from catsdogs.config import ConfigError, split_args
from catsdogs.holdout import LABELS_FILE, make_holdout, score_holdout

log = logging.getLogger("holdout_check")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_COUNT = 1000


def _pop_count(argv: list[str]) -> tuple[int, list[str]]:
    values = [arg.split("=", 1)[1] for arg in argv if arg.startswith("holdout=")]
    rest = [arg for arg in argv if not arg.startswith("holdout=")]
    if not values:
        return DEFAULT_COUNT, rest
    try:
        return int(values[-1]), rest
    except ValueError:
        raise ConfigError(f"holdout={values[-1]}: expected a number of photos, for example holdout=1000") from None


def main(argv: list[str]) -> None:
    count, argv = _pop_count(argv)
    cfg = config_from_args(argv)
    # Without a config, the scripts below pick the default (GPU or CPU) themselves.
    config, overrides = split_args(argv)

    base = Path(cfg.runs.dir) / "holdout"
    data_root = make_holdout(cfg.data.root, base / "data" / f"{Path(cfg.data.root).name}-holdout{count}",
                             count, cfg.data.seed, cfg.data.decode_workers)
    # Later overrides win, so these send the check's data, runs, W&B runs and submissions to
    # folders of its own, under an experiment name of its own.
    experiment = f"{cfg.experiment}-holdout{count}"
    run_folder = base / experiment
    redirected = [*overrides, f"experiment={experiment}", f"data.root={data_root}", f"runs.dir={base}",
                  f"wandb.dir={base / 'wandb'}", f"predict.output_dir={run_folder / 'submissions'}"]
    env = {**os.environ, "PYTHON": sys.executable}
    for command in (["bash", "scripts/train_folds.sh", *config, *redirected],
                    [sys.executable, "src/predict.py", *config, *redirected]):
        log.info("Running %s", " ".join(command))
        completed = subprocess.run(command, cwd=REPO, env=env)
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(command[:2])} failed with exit code {completed.returncode}; "
                               f"run the same holdout_check command again to resume")

    result = score_holdout(run_folder / "submissions" / "submission.csv", data_root / LABELS_FILE,
                           run_folder / "cv.json", run_folder / "holdout.json")
    print(f"Held-out check {experiment}: CV log loss {result['cv_logloss']:.5f} (accuracy "
          f"{result['cv_accuracy']:.4f}) on {data_root / 'train'}; held-out log loss "
          f"{result['holdout_logloss']:.5f} (accuracy {result['holdout_accuracy']:.4f}) on {result['photos']} "
          f"photos; {run_folder / 'holdout.json'}", flush=True)


if __name__ == "__main__":
    run_main(main)
