"""Decode every photo of a data folder once and report the ones that cannot be used.

Usage: python src/check_data.py [CONFIG] [key=value ...]
Exits 1 when a photo is unusable and data.bad_images is `error`, 0 otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path

from catsdogs.cli import config_from_args, run_main
from catsdogs.data import scan_test, scan_train
from catsdogs.images import find_bad_images

log = logging.getLogger("check_data")


def main(argv: list[str]) -> int:
    cfg = config_from_args(argv)
    root = Path(cfg.data.root)
    total_bad = 0
    for split, scan in (("train", scan_train), ("test", scan_test)):
        frame = scan(root)
        folder = root / split
        bad = find_bad_images([folder / name for name in frame["image"]], workers=cfg.data.decode_workers)
        for path, reason in bad:
            log.warning("%s: %s", path, reason)
        log.info("%s: %d photos, %d unusable", folder, len(frame), len(bad))
        total_bad += len(bad)
    if total_bad and cfg.data.bad_images == "error":
        log.error("%d unusable photos and data.bad_images=error: fix or remove them before training", total_bad)
        return 1
    if total_bad:
        log.info("%d unusable photos will be skipped in training; unusable test photos get P(dog) = 0.5", total_bad)
    return 0


if __name__ == "__main__":
    run_main(main)
