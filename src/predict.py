"""Predict the test photos with every fold model of one or more runs and write the submission.

Usage:
  python src/predict.py [CONFIG] [key=value ...]          one experiment's run folder
  python src/predict.py runs/A runs/B [key=value ...]     blend several runs, weights fitted on OOF
Writes submissions/submission.csv and submissions/<experiment>-cv<score>.csv.
"""

from __future__ import annotations

import logging
from pathlib import Path

from catsdogs.cli import config_from_args, run_main
from catsdogs.config import split_args
from catsdogs.predicting import load_run, predict_runs
from catsdogs.submission import check_submission, write_submission
from catsdogs.training import run_dir

log = logging.getLogger("predict")


def main(argv: list[str]) -> None:
    positional, overrides = split_args(argv)
    run_folders = [Path(arg) for arg in positional if (Path(arg) / "config.yaml").is_file()]
    if positional and len(run_folders) == len(positional):
        folders = run_folders
    elif len(positional) <= 1:
        folders = [run_dir(config_from_args(argv))]
    else:
        not_runs = [arg for arg in positional if Path(arg) not in run_folders]
        raise FileNotFoundError(f"Not run folders (no config.yaml inside): {', '.join(not_runs)}")
    # The data root and output folder of this prediction come from the command line, not from
    # the configs the runs were trained with, so trained runs can predict any test folder.
    runs = [load_run(folder, overrides) for folder in folders]

    submission, name, score = predict_runs(runs)
    output_dir = Path(runs[0].cfg.predict.output_dir)
    named_path = output_dir / f"{name}-cv{score:.5f}.csv"
    main_path = output_dir / "submission.csv"
    sample = Path(runs[0].cfg.data.root) / "sample_submission.csv"
    for path in (named_path, main_path):
        write_submission(path, submission["id"], submission["label"])
        check_submission(path, sample_path=sample if sample.is_file() else None,
                         expected_ids=None if sample.is_file() else submission["id"].tolist())
    print(f"Wrote {main_path} and {named_path}: {len(submission)} rows, CV log loss {score:.5f}", flush=True)


if __name__ == "__main__":
    run_main(main)
