"""Transfer learning helpers: stage decomposition, freezing, and optimizer parameter groups.

`model_stages` splits a network into a stem, its body stages and a head, so that the training
engine can freeze a prefix and cache that prefix's output. `set_finetune_mode` freezes
parameters by stage, and `train_mode` keeps frozen BatchNorm layers in eval mode so their
running statistics stay as the pretrained network left them.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch
from torch import nn
from timm.models.efficientnet import EfficientNet as TimmEfficientNet
from timm.models.resnet import ResNet as TimmResNet

from .lenet import LeNet
from .resnet import ResNet

__all__ = [
    "FINETUNE_MODES",
    "head_module",
    "head_parameters",
    "model_stages",
    "set_finetune_mode",
    "train_mode",
    "unfreeze_all",
    "param_groups",
]

_logger = logging.getLogger(__name__)

FINETUNE_MODES = ("all", "last", "head")

_SUPPORTED_FAMILIES = (
    "hand-written ResNet/ResNeXt and LeNet, timm ResNet family "
    "(timm.models.resnet.ResNet) and timm EfficientNet family (timm.models.efficientnet.EfficientNet)"
)


def head_module(model: nn.Module) -> tuple[str, nn.Module]:
    """Find the final classifier layer, the one replaced for a new number of classes.

    Returns its qualified name in `model.named_modules()` and the module itself. Models with
    `get_classifier()` (timm models and the hand-written ones) use it, and other models fall
    back to an attribute named `fc`, `classifier` or `head`.
    """
    classifier = None
    if hasattr(model, "get_classifier"):
        classifier = model.get_classifier()
    else:
        for attribute in ("fc", "classifier", "head"):
            if isinstance(getattr(model, attribute, None), nn.Module):
                classifier = getattr(model, attribute)
                break
    if classifier is None:
        raise TypeError(
            f"Cannot find the classifier of {type(model).__name__}: it has no get_classifier() "
            f"and no fc, classifier or head attribute"
        )

    for name, module in model.named_modules():
        if module is classifier and name:
            return name, module
    raise TypeError(f"The classifier of {type(model).__name__} is not a submodule of the model")


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Return the parameters of the final classifier layer."""
    return list(head_module(model)[1].parameters())


class _HeadStage(nn.Module):
    """A head stage that runs a model's own head code on the head's modules.

    The modules are registered so that `parameters()` and freezing see them. The model itself
    is not registered, so the stage does not own the whole network.
    """

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], **modules: nn.Module) -> None:
        super().__init__()
        for name, module in modules.items():
            self.add_module(name, module)
        self._forward = forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward(x)


def model_stages(model: nn.Module) -> list[nn.Module]:
    """Split `model` into [stem, stage 1, ..., stage N, head].

    Applying the returned modules in order computes `model(x)`, in eval and in train mode.
    The modules share parameters with `model`. The head of a timm model calls the model's own
    `forward_head`, so its dropout follows `model.train()` and `model.eval()`.

    Raises:
        TypeError: for a model family not listed in the module's supported set.
    """
    if isinstance(model, ResNet):
        stem = nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool)
        head = nn.Sequential(model.global_pool, model.flatten, model.head_drop, model.fc)
        return [stem, model.layer1, model.layer2, model.layer3, model.layer4, head]

    if isinstance(model, LeNet):
        stem = nn.Sequential(
            model.conv1, model.act1, model.pool1, model.conv2, model.act2, model.pool2, model.global_pool
        )
        head = nn.Sequential(
            model.flatten, model.fc1, model.act3, model.fc2, model.act4, model.head_drop, model.fc
        )
        return [stem, head]

    if isinstance(model, TimmResNet):
        stem = nn.Sequential(model.conv1, model.bn1, model.act1, model.maxpool)
        head = _HeadStage(model.forward_head, global_pool=model.global_pool, fc=model.fc)
        return [stem, model.layer1, model.layer2, model.layer3, model.layer4, head]

    if isinstance(model, TimmEfficientNet):
        stem = nn.Sequential(model.conv_stem, model.bn1)

        def forward_efficientnet_head(x: torch.Tensor) -> torch.Tensor:
            return model.forward_head(model.bn2(model.conv_head(x)))

        head = _HeadStage(
            forward_efficientnet_head,
            conv_head=model.conv_head,
            bn2=model.bn2,
            global_pool=model.global_pool,
            classifier=model.classifier,
        )
        return [stem, *model.blocks, head]

    raise TypeError(
        f"model_stages does not know how to split {type(model).__module__}.{type(model).__name__}; "
        f"supported: {_SUPPORTED_FAMILIES}"
    )


def _set_requires_grad(module: nn.Module, requires_grad: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(requires_grad)


def set_finetune_mode(model: nn.Module, mode: str, trainable_stages: int = 1) -> None:
    """Freeze parameters of `model` for fine-tuning.

    Modes:
        all: every parameter trains.
        last: the head stage and the last `trainable_stages` stages before it train (the stem
            counts as the first stage, see `model_stages`); the rest is frozen.
        head: only the final classifier layer (`head_module`) trains.

    Frozen parameters get `requires_grad=False`. Call `train_mode(model)` in place of
    `model.train()` so that frozen BatchNorm layers keep their running statistics.
    """
    if mode not in FINETUNE_MODES:
        raise ValueError(f"Invalid fine-tune mode {mode!r}; expected one of {FINETUNE_MODES}")

    if mode == "all":
        _set_requires_grad(model, True)
    elif mode == "head":
        _set_requires_grad(model, False)
        _set_requires_grad(head_module(model)[1], True)
    else:
        stages = model_stages(model)
        body = stages[:-1]
        if not 0 <= trainable_stages <= len(body):
            raise ValueError(
                f"trainable_stages must be between 0 and {len(body)} for {type(model).__name__} "
                f"(stem and {len(body) - 1} stages), got {trainable_stages}"
            )
        _set_requires_grad(model, False)
        _set_requires_grad(stages[-1], True)
        for stage in body[len(body) - trainable_stages :]:
            _set_requires_grad(stage, True)

    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    _logger.info("Fine-tune mode %s: %d of %d parameters train", mode, trainable, total)


def train_mode(model: nn.Module) -> nn.Module:
    """Put `model` in training mode, except BatchNorm layers whose parameters are all frozen.

    Those stay in eval mode, so they normalise with their running statistics and do not update
    them. A BatchNorm layer without affine parameters follows the model into training mode.
    Returns `model`.
    """
    model.train()
    for module in model.modules():
        if not isinstance(module, nn.modules.batchnorm._BatchNorm):
            continue
        parameters = list(module.parameters(recurse=False))
        if parameters and not any(p.requires_grad for p in parameters):
            module.eval()
    return model


def unfreeze_all(model: nn.Module) -> None:
    """Make every parameter trainable, for gradual unfreezing.

    Parameters frozen before are not in an optimizer built from `param_groups` then, so build
    a new optimizer (or add the groups) after calling this.
    """
    _set_requires_grad(model, True)
    _logger.info("Unfroze all %d parameters", sum(p.numel() for p in model.parameters()))


def param_groups(
    model: nn.Module,
    lr: float,
    weight_decay: float,
    backbone_lr_mult: float = 1.0,
) -> list[dict]:
    """Build optimizer parameter groups: the classifier at `lr`, the rest at `lr * backbone_lr_mult`.

    Only parameters with `requires_grad` are included. One-dimensional parameters (biases and
    normalisation weights) get no weight decay. Empty groups are left out. Each group has a
    `name` entry ("head/decay", "backbone/no_decay", ...) for logging.
    """
    head_ids = {id(p) for p in head_parameters(model)}
    buckets: dict[tuple[str, bool], list[torch.Tensor]] = {}
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        part = "head" if id(parameter) in head_ids else "backbone"
        decays = parameter.ndim > 1
        buckets.setdefault((part, decays), []).append(parameter)

    groups = []
    for part in ("head", "backbone"):
        group_lr = lr if part == "head" else lr * backbone_lr_mult
        for decays in (True, False):
            parameters = buckets.get((part, decays))
            if not parameters:
                continue
            groups.append(
                {
                    "name": f"{part}/{'decay' if decays else 'no_decay'}",
                    "params": parameters,
                    "lr": group_lr,
                    "weight_decay": weight_decay if decays else 0.0,
                }
            )
    return groups
