"""Cache of a frozen prefix's output, for fast fine-tuning of the last stages on CPU.

When the first stages of a pretrained network are frozen (`model.finetune` last or
head), their output for a given input never changes. It is therefore computed once for
a fixed set of views of every photo and reused by every epoch and every fold. Training
then runs only the trainable stages, sampling one cached view per photo per epoch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from catsdogs.io import atomic_write
from catsdogs.models import model_stages
from catsdogs.transforms import apply_view

log = logging.getLogger(__name__)


def frozen_prefix_length(stages: list[nn.Module]) -> int:
    """Count the leading stages whose parameters are all frozen."""
    count = 0
    for stage in stages:
        if any(parameter.requires_grad for parameter in stage.parameters()):
            break
        count += 1
    return count


def split_model(model: nn.Module, prefix_length: int) -> tuple[nn.Sequential, nn.Sequential]:
    """Return (frozen prefix, trainable rest) as two sequential views sharing the model's modules."""
    stages = model_stages(model)
    return nn.Sequential(*stages[:prefix_length]), nn.Sequential(*stages[prefix_length:])


def normalize_batch(images: np.ndarray, mean, std) -> torch.Tensor:
    """Turn uint8 [B, H, W, 3] into normalised float [B, 3, H, W], as the eval transform does."""
    batch = torch.from_numpy(np.array(images, copy=True)).permute(0, 3, 1, 2).float().div_(255.0)
    mean_tensor = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_tensor = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return batch.sub_(mean_tensor).div_(std_tensor)


def _prefix_key(prefix: nn.Module, images_key: str, views: list[str], mean, std) -> str:
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in prefix.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(f"{images_key}|{views}|{tuple(mean)}|{tuple(std)}".encode())
    return digest.hexdigest()


@torch.no_grad()
def prefix_features(prefix: nn.Module, images: np.ndarray, images_key: str, views: list[str], mean, std,
                    cache_dir: str | os.PathLike, device: torch.device, batch_size: int = 128,
                    channels_last: bool = True) -> np.ndarray:
    """Return the prefix's output for every photo and view as float32 [N, V, C, H, W].

    The result is stored under `cache_dir`, keyed by the prefix weights, the photos and
    the views, and memory-mapped on reuse, so the folds of one experiment share it.
    """
    key = _prefix_key(prefix, images_key, views, mean, std)
    path = Path(cache_dir) / f"features-{key}.npy"
    if path.is_file():
        log.info("Reusing frozen-prefix features %s", path)
        return np.load(path, mmap_mode="r")

    prefix = prefix.to(device).eval()
    if channels_last:
        prefix = prefix.to(memory_format=torch.channels_last)
    log.info("Computing frozen-prefix features of %d photos x %d views into %s", len(images), len(views), path)
    output: np.ndarray | None = None
    started = time.time()
    next_report = 0.25
    for start in range(0, len(images), batch_size):
        batch = normalize_batch(images[start:start + batch_size], mean, std).to(device)
        per_view = []
        for view in views:
            inputs = apply_view(batch, view)
            if channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            per_view.append(prefix(inputs).float().cpu())
        stacked = torch.stack(per_view, dim=1).contiguous().numpy()
        if output is None:
            output = np.empty((len(images),) + stacked.shape[1:], dtype=np.float32)
        output[start:start + len(stacked)] = stacked
        done = (start + len(stacked)) / len(images)
        if done >= next_report:
            rate = (start + len(stacked)) * len(views) / (time.time() - started)
            log.info("Frozen-prefix features: %.0f%% done, %.0f passes/s", 100 * done, rate)
            next_report += 0.25
    assert output is not None
    with atomic_write(path, "wb") as handle:
        np.save(handle, output)
    return output


class CachedViewsDataset(torch.utils.data.Dataset):
    """Cached prefix outputs of chosen photos: one random view per item, or all views."""

    def __init__(self, features: np.ndarray, indices: np.ndarray, labels: np.ndarray, random_view: bool,
                 view_index: list[int] | None = None):
        self.features = features
        self.indices = np.asarray(indices)
        self.labels = np.asarray(labels, dtype=np.float32)
        self.random_view = random_view
        self.view_index = view_index

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.features[self.indices[item]]
        if self.random_view:
            row = row[np.random.randint(len(row))]
        elif self.view_index is not None:
            row = row[self.view_index]
        return torch.from_numpy(np.array(row, dtype=np.float32)), torch.tensor(self.labels[item])
