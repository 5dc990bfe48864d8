"""Atomic file writes and safe checkpoint loading.

Every file a run leaves behind goes through `atomic_write`, so a run killed at any
moment leaves either the previous complete file or the new complete file, never a
partial one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import torch


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside `path`; on success fsync it and rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    # mkstemp creates the file readable by its owner only; give it the usual umask-based mode.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the folder entry itself is on disk.
    with contextlib.suppress(OSError):
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_write(path, "w") as handle:
        handle.write(text)


def save_checkpoint(obj: dict, path: str | os.PathLike) -> None:
    """Save a checkpoint of tensors and plain Python values atomically."""
    with atomic_write(path, "wb") as handle:
        torch.save(obj, handle)


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded without arbitrary unpickling."""


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """Load a checkpoint with `weights_only=True`, rejecting anything that needs full unpickling."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError or RuntimeError depending on the content
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise UnsafeCheckpointError(
                f"Refusing to load {path}: it holds objects other than tensors and plain Python "
                f"values, and loading it would run arbitrary unpickling code. Re-save it as a "
                f"plain state dict ({type(exc).__name__}: {str(exc).splitlines()[0]})"
            ) from exc
        raise
