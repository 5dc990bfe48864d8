"""Weights & Biases logging: one W&B run per fold, grouped by experiment.

The mode is `wandb.mode` from the config unless WANDB_MODE is set. `online` needs an
API key, from WANDB_API_KEY or a `wandb login` entry in ~/.netrc. Without one the run is
logged offline instead, so a missing key never makes a run wait on the network.
Offline runs can be uploaded later with `wandb sync <dir>`.
"""

from __future__ import annotations

import logging
import netrc
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(configured: str) -> str:
    """Return the W&B mode to use: WANDB_MODE wins, and online falls back to offline without a key."""
    mode = os.environ.get("WANDB_MODE", configured).strip().lower()
    if mode in ("dryrun", "offline"):
        return "offline"
    if mode in ("disabled", "off"):
        return "disabled"
    if mode != "online":
        raise ValueError(f"Invalid W&B mode {mode!r}: expected online, offline or disabled")
    if not _has_api_key():
        log.warning("W&B mode is online but no API key was found (WANDB_API_KEY or ~/.netrc); logging offline")
        return "offline"
    return "online"


class Tracker:
    """A W&B run, or nothing at all when the mode is disabled."""

    def __init__(self, cfg, run_name: str, run_id: str, config: dict[str, Any], job_type: str = "train"):
        self.mode = resolve_mode(cfg.wandb.mode)
        self.run = None
        if self.mode == "disabled":
            return
        import wandb  # imported here so that a disabled tracker costs no start-up time

        Path(cfg.wandb.dir).mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            mode=self.mode, project=cfg.wandb.project, entity=cfg.wandb.entity, dir=cfg.wandb.dir,
            group=cfg.experiment, name=run_name, id=run_id, resume="allow", job_type=job_type,
            config=config,
            settings=wandb.Settings(console="off", quiet=True, x_disable_stats=not cfg.wandb.system_metrics),
        )
        log.info("W&B run %s (%s) in %s", run_id, self.mode, cfg.wandb.dir)

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run is not None:
            for key, value in values.items():
                self.run.summary[key] = value

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
