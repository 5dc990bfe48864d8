"""Shared start-up of the command-line entry points: logging, config choice and clean errors."""

from __future__ import annotations

import logging
import sys
from typing import Callable

from catsdogs.config import ConfigError, load_config, resolve_config_path, split_args

log = logging.getLogger("catsdogs")


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S", stream=sys.stdout)


def default_config_name() -> str:
    """Return `default` on a machine with a CUDA GPU, else `cpu`, and print which on the first line."""
    import torch

    if torch.cuda.is_available():
        return "default"
    print("No GPU found: running the CPU experiment (configs/cpu.yaml)", flush=True)
    return "cpu"


def config_from_args(argv: list[str], allow_extra_positional: bool = False):
    """Load the config named by the first positional argument (or the default) with the overrides."""
    positional, overrides = split_args(argv)
    if len(positional) > 1 and not allow_extra_positional:
        raise ConfigError(f"Expected at most one config, got {positional}")
    name = positional[0] if positional else default_config_name()
    return load_config(resolve_config_path(name), overrides)


def run_main(main: Callable[[list[str]], int | None]) -> None:
    """Run an entry point; expected errors print one clear message instead of a traceback."""
    from catsdogs.data import DataError
    from catsdogs.images import BadImageError
    from catsdogs.io import UnsafeCheckpointError
    from catsdogs.submission import SubmissionError

    setup_logging()
    expected = (ConfigError, DataError, BadImageError, UnsafeCheckpointError, SubmissionError,
                FileNotFoundError, RuntimeError, ValueError)
    try:
        code = main(sys.argv[1:])
    except KeyboardInterrupt:
        log.error("Interrupted")
        sys.exit(130)
    except expected as exc:
        log.error("%s", exc)
        sys.exit(2)
    sys.exit(code or 0)
