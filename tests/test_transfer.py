"""Tests for stage decomposition, fine-tune freezing, train_mode and parameter groups."""

import pytest
import timm
import torch
from torch import nn

from catsdogs.models import (
    build_model,
    head_module,
    head_parameters,
    model_stages,
    param_groups,
    set_finetune_mode,
    train_mode,
    unfreeze_all,
)


def _randomise_norm(model: nn.Module) -> None:
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                size = module.num_features
                module.weight.copy_(torch.rand(size, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(size, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(size, generator=generator) + 0.5)


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _train_step(model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    torch.manual_seed(1)
    train_mode(model)
    images = torch.randn(4, 3, 64, 64)
    targets = torch.tensor([[0.0], [1.0], [1.0], [0.0]])
    loss = nn.functional.binary_cross_entropy_with_logits(model(images), targets)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize(
    "name, stage_count",
    [
        ("hand/resnet18", 6),
        ("hand/lenet", 2),
        ("timm/resnet18", 6),
        ("timm/tf_efficientnet_lite0", 9),
    ],
)
def test_stages_compose_to_model(name, stage_count):
    torch.manual_seed(0)
    model = build_model(name, num_classes=3, drop_rate=0.2)
    _randomise_norm(model)
    model.eval()
    stages = model_stages(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.inference_mode():
        expected = model(x)
        output = x
        for stage in stages:
            output = stage(output)
    assert len(stages) == stage_count
    assert torch.equal(output, expected)


def test_stages_share_parameters():
    model = build_model("hand/resnet18")
    staged = {id(p) for stage in model_stages(model) for p in stage.parameters()}
    assert staged == {id(p) for p in model.parameters()}


def test_stages_unknown_family():
    with pytest.raises(TypeError, match="does not know how to split"):
        model_stages(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.LazyLinear(1)))


def test_head_module_names():
    assert head_module(build_model("hand/resnet18"))[0] == "fc"
    assert head_module(build_model("timm/tf_efficientnet_lite0"))[0] == "classifier"


@pytest.mark.parametrize("name", ["hand/resnet18", "timm/tf_efficientnet_lite0"])
def test_head_mode_trains_only_head(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=1)
    _randomise_norm(model)
    set_finetune_mode(model, "head")
    head_name = head_module(model)[0]
    optimizer = torch.optim.AdamW(param_groups(model, lr=1e-2, weight_decay=0.05))
    before = _snapshot(model)

    _train_step(model, optimizer)

    after = model.state_dict()
    changed = [key for key in before if not torch.equal(before[key], after[key])]
    assert changed == [f"{head_name}.weight", f"{head_name}.bias"]


def test_train_mode_keeps_frozen_bn_eval():
    model = build_model("hand/resnet18", num_classes=1)
    set_finetune_mode(model, "last", trainable_stages=1)
    train_mode(model)
    assert model.layer4[0].bn1.training
    assert not model.layer3[0].bn1.training
    assert not model.bn1.training


def test_last_mode_trains_last_stage_and_head():
    torch.manual_seed(0)
    model = build_model("hand/resnet18", num_classes=1)
    set_finetune_mode(model, "last", trainable_stages=1)
    trainable = {key.split(".")[0] for key, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"layer4", "fc"}

    optimizer = torch.optim.SGD(param_groups(model, lr=0.1, weight_decay=0.0), momentum=0.9)
    before = _snapshot(model)
    _train_step(model, optimizer)
    after = model.state_dict()
    changed = {key.split(".")[0] for key in before if not torch.equal(before[key], after[key])}
    assert changed == {"layer4", "fc"}


def test_last_mode_two_stages_timm():
    model = timm.create_model("tf_efficientnet_lite0", num_classes=1)
    set_finetune_mode(model, "last", trainable_stages=2)
    trainable = {key.split(".")[0] for key, p in model.named_parameters() if p.requires_grad}
    assert model.blocks[5][0].conv_pw.weight.requires_grad
    assert model.blocks[6][0].conv_pw.weight.requires_grad
    assert not model.blocks[4][0].conv_pw.weight.requires_grad
    assert trainable == {"blocks", "conv_head", "bn2", "classifier"}


def test_last_mode_rejects_too_many_stages():
    model = build_model("hand/resnet18")
    with pytest.raises(ValueError, match="trainable_stages"):
        set_finetune_mode(model, "last", trainable_stages=6)


def test_invalid_mode():
    with pytest.raises(ValueError, match="middle"):
        set_finetune_mode(build_model("hand/lenet"), "middle")


def test_unfreeze_all():
    model = build_model("hand/resnet18")
    set_finetune_mode(model, "head")
    unfreeze_all(model)
    assert all(p.requires_grad for p in model.parameters())


def test_all_mode_after_head():
    model = build_model("hand/lenet")
    set_finetune_mode(model, "head")
    set_finetune_mode(model, "all")
    assert all(p.requires_grad for p in model.parameters())


def test_param_groups_two_lrs():
    model = build_model("hand/resnet18", num_classes=1)
    groups = param_groups(model, lr=1e-3, weight_decay=0.05, backbone_lr_mult=0.1)
    assert sorted(group["lr"] for group in groups) == pytest.approx([1e-4, 1e-4, 1e-3, 1e-3])
    head_ids = {id(p) for p in head_parameters(model)}
    for group in groups:
        is_head = all(id(p) in head_ids for p in group["params"])
        assert group["lr"] == (1e-3 if is_head else pytest.approx(1e-4))


def test_param_groups_no_decay_on_1d():
    model = build_model("hand/resnet18", num_classes=1)
    for group in param_groups(model, lr=1e-3, weight_decay=0.05):
        has_1d = any(p.ndim <= 1 for p in group["params"])
        assert group["weight_decay"] == (0.0 if has_1d else 0.05)


def test_param_groups_cover_trainable_only():
    model = build_model("hand/resnet18", num_classes=1)
    set_finetune_mode(model, "last", trainable_stages=1)
    grouped = [id(p) for group in param_groups(model, lr=1e-3, weight_decay=0.0) for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", ["timm/resnet18", "timm/tf_efficientnet_lite0"])
def test_stages_dropout_follows_model(name):
    # The head's dropout must be off after model.eval() and on after model.train().
    model = build_model(name, num_classes=3, drop_rate=0.5)
    head = model_stages(model)[-1]
    channels = 320 if "lite0" in name else 512
    features = torch.randn(2, channels, 2, 2)
    model.eval()
    with torch.inference_mode():
        assert torch.equal(head(features), head(features))
    model.train()
    torch.manual_seed(0)
    with torch.inference_mode():
        first = head(features)
        second = head(features)
    assert not torch.equal(first, second)
