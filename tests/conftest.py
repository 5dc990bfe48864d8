"""Shared fixtures: tiny photo folders made on the fly."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data" / "dogs-vs-cats"


def write_photo(path: Path, seed: int, size: int = 24) -> Path:
    """Write a small random JPEG; dogs get a brighter left half so a model can tell them apart."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 120, size=(size, size, 3), dtype=np.uint8)
    if path.name.lower().startswith("dog"):
        image[:, : size // 2] += 120
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def photo_root(tmp_path: Path) -> Path:
    """A data root with 10 cats and 10 dogs in train/ and 6 photos in test/."""
    root = tmp_path / "photos"
    for index in range(10):
        write_photo(root / "train" / f"cat.{index}.jpg", seed=index)
        write_photo(root / "train" / f"dog.{index}.jpg", seed=100 + index)
    for index in (1, 2, 10, 11, 100, 3):
        write_photo(root / "test" / f"{index}.jpg", seed=1000 + index)
    return root
