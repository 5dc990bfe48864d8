"""Tests for the hand-written networks, the registry and src/list_models.py."""

import pytest
import timm
import torch
import torchvision

import list_models as list_models_script
from catsdogs.models import HAND_MODELS, build_model, count_parameters, resnet

EXPECTED_PARAMETERS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
}
TWIN_ARCHS = ["resnet18", "resnet50", "resnext50_32x4d"]


@pytest.mark.parametrize("arch", sorted(EXPECTED_PARAMETERS))
def test_parameter_count(arch):
    factory = getattr(resnet, arch)
    assert count_parameters(lambda: factory(num_classes=1000)) == EXPECTED_PARAMETERS[arch]


def test_meta_count_equals_real():
    real = resnet.resnext50_32x4d(num_classes=10)
    counted = count_parameters(lambda: resnet.resnext50_32x4d(num_classes=10))
    assert counted == sum(p.numel() for p in real.parameters())


def test_half_width_resnet18_halves_every_layer():
    full, half = resnet.resnet18(num_classes=1), resnet.resnet18_half(num_classes=1)
    full_shapes, half_shapes = full.state_dict(), half.state_dict()
    assert list(full_shapes) == list(half_shapes)
    for key, shape in ((k, v.shape) for k, v in full_shapes.items() if v.dim() > 0):
        halved = tuple(size if size in (1, 3, 7) else size // 2 for size in shape)
        assert tuple(half_shapes[key].shape) == halved, key
    assert half(torch.randn(2, 3, 64, 64)).shape == (2, 1)


@pytest.mark.parametrize("arch", TWIN_ARCHS)
def test_keys_equal_torchvision(arch):
    with torch.device("meta"):
        hand = getattr(resnet, arch)(num_classes=1000)
        reference = getattr(torchvision.models, arch)()
    assert list(hand.state_dict()) == list(reference.state_dict())


@pytest.mark.parametrize("arch", TWIN_ARCHS)
def test_keys_equal_timm(arch):
    with torch.device("meta"):
        hand = getattr(resnet, arch)(num_classes=1000)
        reference = timm.create_model(arch, pretrained=False)
    assert list(hand.state_dict()) == list(reference.state_dict())


@pytest.mark.parametrize("arch", TWIN_ARCHS)
def test_strict_load_torchvision(arch):
    with torch.device("meta"):
        hand = getattr(resnet, arch)(num_classes=1000)
        reference = getattr(torchvision.models, arch)()
    result = hand.load_state_dict(reference.state_dict(), strict=True)
    assert not result.missing_keys
    assert not result.unexpected_keys


def test_strict_load_timm_real_tensors():
    reference = timm.create_model("resnet18", pretrained=False)
    hand = resnet.resnet18(num_classes=1000)
    hand.load_state_dict(reference.state_dict(), strict=True)
    assert torch.equal(hand.layer4[1].conv2.weight, reference.layer4[1].conv2.weight)


def test_basic_block_rejects_groups():
    with pytest.raises(ValueError, match="Bottleneck"):
        resnet.BasicBlock(64, 64, groups=32, base_width=4)


def test_zero_init_last_zeroes_bn():
    model = resnet.resnet18(num_classes=1, zero_init_last=True)
    assert torch.count_nonzero(model.layer1[0].bn2.weight) == 0


def test_drop_rate_sets_dropout():
    model = build_model("hand/resnet18", num_classes=1, drop_rate=0.3)
    assert model.head_drop.p == 0.3


@pytest.mark.parametrize("arch", sorted(HAND_MODELS))
def test_forward_shape(arch):
    torch.manual_seed(0)
    model = build_model(f"hand/{arch}", num_classes=1).eval()
    with torch.inference_mode():
        output = model(torch.randn(1, 3, 64, 64))
    assert output.shape == (1, 1)


@pytest.mark.parametrize("size", [16, 32, 100])
def test_lenet_any_size(size):
    model = build_model("hand/lenet", num_classes=1).eval()
    with torch.inference_mode():
        output = model(torch.randn(1, 3, size, size))
    assert output.shape == (1, 1)


def test_lenet_classic_at_32px():
    # At 32x32 the adaptive pool receives a 5x5 map already, so it must pass it through unchanged.
    model = build_model("hand/lenet", num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)
    features = model.pool2(model.act2(model.conv2(model.pool1(model.act1(model.conv1(x))))))
    assert torch.equal(model.global_pool(features), features)


def test_timm_model_built():
    model = build_model("timm/resnet18", num_classes=1, drop_rate=0.2)
    assert model.get_classifier().out_features == 1


def test_unknown_name_suggests():
    with pytest.raises(ValueError, match="hand/resnet50"):
        build_model("hand/resnet5")


def test_unknown_timm_name_suggests():
    with pytest.raises(ValueError, match="timm/resnet50"):
        build_model("timm/resnet50x_typo")


def test_missing_prefix_suggests():
    with pytest.raises(ValueError, match="hand/resnext50_32x4d"):
        build_model("resnext50_32x4d")


def test_list_models_script(capsys):
    assert list_models_script.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "hand/resnet50  25557032" in lines
    assert len(lines) == len(HAND_MODELS)


def test_list_models_pattern(capsys):
    list_models_script.main(["tf_efficientnet_lite0"])
    lines = capsys.readouterr().out.splitlines()
    assert lines == ["timm/tf_efficientnet_lite0  4652008"]


def test_list_models_hand_pattern(capsys):
    list_models_script.main(["hand/resnext*"])
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == ["hand/resnext50_32x4d", "hand/resnext101_32x8d", "hand/resnext101_64x4d"]
