"""Model names and construction.

Names have a family prefix: `hand/<arch>` for the networks written in this package and
`timm/<timm model name>` for any model timm can build (a pretrained tag such as
`timm/resnet50.tv_in1k` selects the weights `pretrained=True` loads).
"""

from __future__ import annotations

import difflib
import fnmatch
import logging
import os
from typing import Callable

import timm
import torch
from torch import nn

from .lenet import lenet
from .resnet import (
    resnet18,
    resnet18_half,
    resnet34,
    resnet50,
    resnet101,
    resnet152,
    resnext50_32x4d,
    resnext101_32x8d,
    resnext101_64x4d,
)
from .pretrained import load_pretrained

__all__ = ["HAND_MODELS", "build_model", "count_parameters", "list_models"]

_logger = logging.getLogger(__name__)

HAND_MODELS: dict[str, Callable[..., nn.Module]] = {
    "lenet": lenet,
    "resnet18": resnet18,
    "resnet18_half": resnet18_half,
    "resnet34": resnet34,
    "resnet50": resnet50,
    "resnet101": resnet101,
    "resnet152": resnet152,
    "resnext50_32x4d": resnext50_32x4d,
    "resnext101_32x8d": resnext101_32x8d,
    "resnext101_64x4d": resnext101_64x4d,
}


def _unknown_name_error(name: str) -> ValueError:
    candidates = [f"hand/{arch}" for arch in HAND_MODELS]
    candidates += [f"timm/{arch}" for arch in timm.list_models()]
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    if not close and "/" not in name:
        close = difflib.get_close_matches(f"hand/{name}", candidates, n=3, cutoff=0.6)
        close += difflib.get_close_matches(f"timm/{name}", candidates, n=3, cutoff=0.6)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    return ValueError(
        f"Unknown model name {name!r}; expected hand/<arch> or timm/<timm model name> "
        f"(run src/list_models.py to see them).{hint}"
    )


def build_model(
    name: str,
    num_classes: int = 1,
    pretrained: bool | str | os.PathLike = False,
    drop_rate: float = 0.0,
) -> nn.Module:
    """Build the model `name` with `num_classes` outputs and load its pretrained weights.

    Args:
        name: `hand/<arch>` (see `HAND_MODELS`) or `timm/<timm model name>`.
        num_classes: outputs of the classifier; 1 for a single P(dog) logit.
        pretrained: False for random weights, True for the published ImageNet weights, a
            checkpoint path, or a package weights name (see `pretrained.load_pretrained`).
        drop_rate: dropout probability before the classifier.

    Raises:
        ValueError: `name` is unknown; the message lists close matches.
    """
    family, _, arch = name.partition("/")
    if family == "hand" and arch in HAND_MODELS:
        model = HAND_MODELS[arch](num_classes=num_classes, drop_rate=drop_rate)
    elif family == "timm" and arch and timm.is_model(arch):
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes, drop_rate=drop_rate)
    else:
        raise _unknown_name_error(name)

    _logger.info("Built %s with %d classes, pretrained=%s", name, num_classes, pretrained)
    load_pretrained(model, name, pretrained)
    return model


def count_parameters(factory: Callable[[], nn.Module]) -> int:
    """Count the parameters of the model `factory` builds, on the meta device where it can.

    The meta device allocates no memory, so even the largest networks count in milliseconds.
    A model whose constructor fails on meta tensors is built on the CPU instead.
    """
    try:
        with torch.device("meta"):
            model = factory()
    except (RuntimeError, NotImplementedError, TypeError) as exc:
        _logger.debug("Building on the meta device failed (%s); building on the CPU", exc)
        model = factory()
    return sum(parameter.numel() for parameter in model.parameters())


def _matches(pattern: str, *names: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for name in names)


def list_models(pattern: str | None = None) -> list[tuple[str, int]]:
    """List model names with their parameter counts at 1,000 classes.

    Without `pattern` only the hand-written models are listed, because timm registers over a
    thousand models and each one is built to be counted. With an fnmatch `pattern` the
    hand-written models and `timm/<name>` entries whose name matches are listed. A pattern may
    include the family prefix (`timm/resnet*`) or leave it out (`resnet*`).
    """
    rows = []
    for arch, factory in HAND_MODELS.items():
        if pattern is None or _matches(pattern, arch, f"hand/{arch}"):
            rows.append((f"hand/{arch}", count_parameters(lambda factory=factory: factory(num_classes=1000))))

    if pattern is None or pattern.startswith("hand/"):
        return rows
    for arch in timm.list_models(pattern.removeprefix("timm/")):
        count = count_parameters(lambda arch=arch: timm.create_model(arch, pretrained=False, num_classes=1000))
        rows.append((f"timm/{arch}", count))
    return rows
