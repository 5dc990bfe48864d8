"""Make (or reuse) the stratified folds of the training photos.

Usage: python src/make_folds.py [CONFIG] [key=value ...]
"""

from __future__ import annotations

import logging

from catsdogs.cli import config_from_args, run_main
from catsdogs.data import folds_path, load_or_make_folds

log = logging.getLogger("make_folds")


def main(argv: list[str]) -> None:
    cfg = config_from_args(argv)
    folds = load_or_make_folds(cfg)
    counts = folds.groupby("fold")["label"].agg(["size", "sum"])
    for fold, row in counts.iterrows():
        log.info("fold %d: %d photos (%d dogs, %d cats)", fold, row["size"], row["sum"], row["size"] - row["sum"])
    log.info("Folds: %s", folds_path(cfg))


if __name__ == "__main__":
    run_main(main)
