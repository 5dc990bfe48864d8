"""Albumentations pipelines for training and evaluation, and the TTA views.

Every pipeline starts from a photo already resized to size x size (by the loader or the
decoded-image cache), so the cache and the file path give identical inputs. TTA views
work on normalised batches, so OOF, test and the frozen-feature cache share one
implementation.
"""

from __future__ import annotations

import albumentations as A
import torch
import torch.nn.functional as F
from albumentations.pytorch import ToTensorV2

TTA_VIEWS = ("identity", "hflip", "zoom", "zoom_hflip")
# The zoom view keeps this central fraction of each side and resizes it back up.
ZOOM_FRACTION = 0.875


def _strict(transforms: list, size: int, mean, std) -> A.Compose:
    # strict=True turns a misspelt or removed argument into an error instead of a warning.
    steps = [A.Resize(size, size), *transforms, A.Normalize(mean=mean, std=std), ToTensorV2()]
    return A.Compose(steps, strict=True)


def augment_steps(preset: str, size: int) -> list:
    """Return the random steps of an augmentation preset: none, light, medium or heavy."""
    if preset == "none":
        return []
    if preset == "light":
        return [A.HorizontalFlip(p=0.5)]
    if preset == "medium":
        return [
            A.RandomResizedCrop(size=(size, size), scale=(0.6, 1.0), ratio=(0.8, 1.25), p=1.0),
            A.HorizontalFlip(p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5),
        ]
    if preset == "heavy":
        return [
            A.RandomResizedCrop(size=(size, size), scale=(0.4, 1.0), ratio=(0.75, 1.33), p=1.0),
            A.HorizontalFlip(p=0.5),
            A.Affine(rotate=(-15, 15), shear=(-8, 8), p=0.5),
            A.ColorJitter(brightness=0.25, contrast=0.25, saturation=0.25, hue=0.05, p=0.7),
            A.ToGray(p=0.05),
            A.CoarseDropout(num_holes_range=(1, 4), hole_height_range=(0.05, 0.2),
                            hole_width_range=(0.05, 0.2), p=0.4),
        ]
    raise ValueError(f"Unknown augmentation preset {preset!r}: expected none, light, medium or heavy")


def train_transform(preset: str, size: int, mean, std) -> A.Compose:
    return _strict(augment_steps(preset, size), size, mean, std)


def eval_transform(size: int, mean, std) -> A.Compose:
    return _strict([], size, mean, std)


def apply_view(batch: torch.Tensor, view: str) -> torch.Tensor:
    """Return one TTA view of a batch [B, C, H, W]: identity, hflip, zoom or zoom_hflip."""
    if view == "identity":
        return batch
    if view == "hflip":
        return torch.flip(batch, dims=[3])
    if view in ("zoom", "zoom_hflip"):
        height, width = batch.shape[-2:]
        crop_h, crop_w = round(height * ZOOM_FRACTION), round(width * ZOOM_FRACTION)
        top, left = (height - crop_h) // 2, (width - crop_w) // 2
        crop = batch[..., top:top + crop_h, left:left + crop_w]
        zoomed = F.interpolate(crop, size=(height, width), mode="bilinear", align_corners=False)
        return torch.flip(zoomed, dims=[3]) if view == "zoom_hflip" else zoomed
    raise ValueError(f"Unknown TTA view {view!r}: expected one of {', '.join(TTA_VIEWS)}")


def check_views(views) -> list[str]:
    views = list(views)
    unknown = [view for view in views if view not in TTA_VIEWS]
    if unknown or not views:
        raise ValueError(f"Invalid TTA views {views}: expected a non-empty list of {', '.join(TTA_VIEWS)}")
    return views
