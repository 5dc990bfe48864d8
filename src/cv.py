"""Pool the folds' out-of-fold predictions of an experiment into oof.csv and cv.json.

Usage: python src/cv.py [CONFIG] [key=value ...]
"""

from __future__ import annotations

import logging
import secrets

from catsdogs.cli import config_from_args, run_main
from catsdogs.config import to_dict
from catsdogs.ensemble import score_run
from catsdogs.tracking import Tracker
from catsdogs.training import run_dir

log = logging.getLogger("cv")


def main(argv: list[str]) -> None:
    cfg = config_from_args(argv)
    folder = run_dir(cfg)
    report = score_run(folder, cfg)
    calibration = report["calibration"]

    tracker = Tracker(cfg, run_name=f"{cfg.experiment}-cv", run_id=f"{cfg.experiment}-cv-{secrets.token_hex(3)}",
                      config=to_dict(cfg), job_type="cv")
    tracker.summary({"cv_logloss": report["logloss"], "cv_accuracy": report["accuracy"],
                     "fold_logloss_std": report["fold_logloss_std"], **{f"calibration/{key}": value
                                                                          for key, value in calibration.items()}})
    tracker.log({f"fold{entry['fold']}/oof_logloss": entry["logloss"] for entry in report["folds"]})
    tracker.finish()

    for entry in report["folds"]:
        log.info("fold %d: log loss %.5f, accuracy %.4f (%d photos)", entry["fold"], entry["logloss"],
                 entry["accuracy"], entry["photos"])
    log.info("OOF log loss before calibration %.5f, after temperature %.3f: %.5f, after clipping at %.4g: %.5f",
             calibration["logloss_raw"], calibration["temperature"], calibration["logloss_temperature"],
             calibration["clip"], calibration["logloss_calibrated"])
    print(f"CV {cfg.experiment}: log loss {report['logloss']:.5f}, accuracy {report['accuracy']:.4f} "
          f"(fold log loss {report['fold_logloss_mean']:.5f} +- {report['fold_logloss_std']:.5f}); "
          f"{folder / 'cv.json'}", flush=True)


if __name__ == "__main__":
    run_main(main)
