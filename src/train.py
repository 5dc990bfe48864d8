"""Train one fold of an experiment.

Usage: python src/train.py [CONFIG] fold=K [key=value ...]
Trains on every fold but K and validates on fold K; resumes from fold_K/last.pt when it exists.
"""

from __future__ import annotations

import logging

from catsdogs.cli import config_from_args, run_main
from catsdogs.config import ConfigError
from catsdogs.engine import NonFiniteLossError
from catsdogs.training import train_fold

log = logging.getLogger("train")


def main(argv: list[str]) -> int:
    fold_args = [arg for arg in argv if arg.startswith("fold=")]
    if len(fold_args) != 1:
        raise ConfigError("Name exactly one fold, for example: python src/train.py fold=0")
    try:
        fold = int(fold_args[0].split("=", 1)[1])
    except ValueError as exc:
        raise ConfigError(f"Invalid {fold_args[0]}: the fold must be an integer") from exc
    cfg = config_from_args([arg for arg in argv if not arg.startswith("fold=")])
    try:
        folder = train_fold(cfg, fold)
    except NonFiniteLossError as exc:
        log.error("Fold %d stopped: %s", fold, exc)
        return 3
    log.info("Fold %d done: %s", fold, folder)
    return 0


if __name__ == "__main__":
    run_main(main)
