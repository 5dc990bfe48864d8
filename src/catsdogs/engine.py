"""One training epoch, one evaluation pass, the optimiser and schedule, EMA and checkpoints."""

from __future__ import annotations

import copy
import logging
import math
import random
from contextlib import nullcontext
from typing import Iterable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from catsdogs.models import param_groups
from catsdogs.transforms import apply_view

log = logging.getLogger(__name__)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int | None, value: float, quantity: str = "Training loss"):
        where = f"epoch {epoch}, step {step}" if step is not None else f"epoch {epoch}"
        super().__init__(f"{quantity} is {value} at {where}; stopping this fold. The last complete "
                         f"epoch's checkpoint is kept. Try a lower train.lr or train.grad_clip>0.")
        self.epoch = epoch
        self.step = step


def resolve_device(name: str) -> torch.device:
    """Map `auto`, `cpu` or `cuda` to a device; `cuda` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device=cuda but no CUDA GPU is visible; use train.device=auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def autocast(device: torch.device, enabled: bool):
    """Mixed precision on GPU (bf16 where supported, else fp16); full precision on CPU."""
    if not enabled or device.type != "cuda":
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def needs_grad_scaler(device: torch.device, amp: bool) -> bool:
    return amp and device.type == "cuda" and not torch.cuda.is_bf16_supported()


class ModelEma(nn.Module):
    """Exponential moving average of a model's weights; buffers are copied as they are."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        self.decay = decay
        for parameter in self.module.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        model_state = model.state_dict()
        for name, shadow in self.module.state_dict().items():
            current = model_state[name].detach()
            if shadow.dtype.is_floating_point:
                shadow.lerp_(current, 1.0 - self.decay)
            else:
                shadow.copy_(current)


def build_optimizer(model: nn.Module, cfg) -> torch.optim.Optimizer:
    groups = param_groups(model, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                          backbone_lr_mult=cfg.model.backbone_lr_mult)
    return torch.optim.AdamW(groups, lr=cfg.train.lr)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg, steps_per_epoch: int):
    """Per-step schedule: linear warmup then cosine decay, or one-cycle."""
    total = max(1, cfg.train.epochs * steps_per_epoch)
    if cfg.train.schedule == "onecycle":
        max_lrs = [group["lr"] for group in optimizer.param_groups]
        # A quarter of the steps warm up. Runs of a few steps need a larger share, because torch's
        # OneCycleLR divides by zero when its warm-up phase ends at step 0.
        warmup_share = max(0.25, min(0.75, 2.0 / total))
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lrs, total_steps=total,
                                                   pct_start=warmup_share, div_factor=25.0, final_div_factor=1e3)
    warmup = min(total - 1, round(cfg.train.warmup_epochs * steps_per_epoch))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def mix_batch(images: torch.Tensor, targets: torch.Tensor, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply mixup or cutmix (chosen at random when both are on) with probability mix_prob."""
    mixup, cutmix = cfg.train.mixup_alpha, cfg.train.cutmix_alpha
    if (mixup <= 0 and cutmix <= 0) or random.random() >= cfg.train.mix_prob:
        return images, targets
    permutation = torch.randperm(images.shape[0], device=images.device)
    use_cutmix = cutmix > 0 and (mixup <= 0 or random.random() < 0.5)
    lam = float(np.random.beta(cutmix, cutmix) if use_cutmix else np.random.beta(mixup, mixup))
    if use_cutmix:
        height, width = images.shape[-2:]
        cut_h, cut_w = int(height * math.sqrt(1 - lam)), int(width * math.sqrt(1 - lam))
        top, left = random.randint(0, height - cut_h), random.randint(0, width - cut_w)
        images = images.clone()
        images[..., top:top + cut_h, left:left + cut_w] = images[permutation][..., top:top + cut_h, left:left + cut_w]
        lam = 1.0 - (cut_h * cut_w) / (height * width)
    else:
        images = lam * images + (1.0 - lam) * images[permutation]
    return images, lam * targets + (1.0 - lam) * targets[permutation]


def bce_loss(logits: torch.Tensor, targets: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Binary cross-entropy on one logit per photo, with targets pulled towards 0.5 by label_smoothing."""
    targets = targets * (1.0 - label_smoothing) + 0.5 * label_smoothing
    return F.binary_cross_entropy_with_logits(logits.float().reshape(-1), targets.float())


def to_device(batch: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    batch = batch.to(device, non_blocking=True)
    if channels_last and batch.dim() == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def train_one_epoch(forward: nn.Module, loader: Iterable, optimizer, scheduler, cfg, device: torch.device,
                    epoch: int, ema: ModelEma | None = None, model: nn.Module | None = None,
                    scaler: torch.amp.GradScaler | None = None) -> float:
    """Train for one epoch and return the mean training loss.

    `forward` maps a batch to logits: the model itself, or the trainable part of it when
    the frozen prefix's output is cached. `model` is the whole network, for EMA updates.
    """
    model = model if model is not None else forward
    accumulation = max(1, cfg.train.grad_accum)
    total_loss, total_count = 0.0, 0
    optimizer.zero_grad(set_to_none=True)
    batches = len(loader)
    for step, (inputs, targets) in enumerate(loader):
        inputs = to_device(inputs, device, cfg.train.channels_last)
        targets = targets.to(device, non_blocking=True)
        inputs, targets = mix_batch(inputs, targets, cfg)
        with autocast(device, cfg.train.amp):
            logits = forward(inputs)
        loss = bce_loss(logits, targets, cfg.train.label_smoothing)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(epoch, step, float(loss))

        scaled = loss / accumulation
        (scaler.scale(scaled) if scaler is not None else scaled).backward()
        if (step + 1) % accumulation == 0 or step + 1 == batches:
            if scaler is not None:
                scaler.unscale_(optimizer)
            if cfg.train.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                               cfg.train.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if ema is not None:
                ema.update(model)
        scheduler.step()

        total_loss += loss.item() * len(targets)
        total_count += len(targets)
    return total_loss / max(1, total_count)


@torch.no_grad()
def predict_logits(forward: nn.Module, loader: Iterable, views: list[str], device: torch.device,
                   channels_last: bool = True, amp: bool = True, views_cached: bool = False) -> np.ndarray:
    """Return logits [N, len(views)] for every photo of the loader, in loader order.

    With `views_cached`, each batch is [B, V, ...] of precomputed views in `views` order;
    otherwise each view is made from the image batch by `apply_view`.
    """
    forward.eval()
    outputs = []
    for inputs, _ in loader:
        inputs = inputs.to(device, non_blocking=True)
        per_view = []
        for index, view in enumerate(views):
            batch = inputs[:, index] if views_cached else apply_view(inputs, view)
            batch = to_device(batch, device, channels_last)
            with autocast(device, amp):
                per_view.append(forward(batch).float().reshape(-1).cpu())
        outputs.append(torch.stack(per_view, dim=1))
    return torch.cat(outputs).numpy().astype(np.float64)
