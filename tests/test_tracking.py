"""W&B mode choice and the settings each run starts with, with wandb.init replaced by a recorder."""

from __future__ import annotations

import pytest
import wandb

from catsdogs.config import load_config
from catsdogs.tracking import Tracker, resolve_mode


@pytest.fixture
def no_api_key(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc there


def test_online_without_key_falls_back_to_offline(no_api_key):
    assert resolve_mode("online") == "offline"


def test_environment_mode_wins(no_api_key, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("offline") == "disabled"


def test_invalid_mode_rejected(no_api_key):
    with pytest.raises(ValueError, match="Invalid W&B mode 'sometimes'"):
        resolve_mode("sometimes")


@pytest.mark.parametrize("config, stats_disabled", [("default", False), ("cpu", True), ("cpu_scratch", True)])
def test_system_metrics_setting_reaches_wandb(no_api_key, monkeypatch, tmp_path, config, stats_disabled):
    calls = []
    monkeypatch.setattr(wandb, "init", lambda **kwargs: calls.append(kwargs) or object())
    cfg = load_config(config, [f"wandb.dir={tmp_path}/wandb", "wandb.mode=offline"])
    tracker = Tracker(cfg, run_name="run", run_id="run-1", config={})
    assert tracker.mode == "offline"
    assert len(calls) == 1
    assert calls[0]["mode"] == "offline"
    assert calls[0]["settings"].x_disable_stats is stats_disabled
