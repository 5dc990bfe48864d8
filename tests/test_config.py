"""Config loading: schema, files, bases and overrides."""

from __future__ import annotations

import pytest

from catsdogs.config import CONFIG_DIR, ConfigError, load_config, parse_pretrained


def test_every_config_file_loads():
    names = sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))
    for name in names:
        cfg = load_config(name)
        assert cfg.experiment == name


def test_required_experiments_exist():
    names = {path.stem for path in CONFIG_DIR.glob("*.yaml")}
    required = {"default", "cpu", "cpu_scratch", "lenet", "hand_resnet34", "hand_resnet50",
                "hand_resnext50_32x4d", "timm_resnet50", "timm_resnext50_32x4d"}
    assert required <= names


def test_base_file_is_inherited():
    cfg = load_config("timm_resnet50")
    assert cfg.model.name == "timm/resnet50"
    assert cfg.data.image_size == load_config("default").data.image_size


def test_override_wins_over_file():
    cfg = load_config("cpu", ["train.epochs=2", "data.root=/tmp/x"])
    assert cfg.train.epochs == 2
    assert cfg.data.root == "/tmp/x"


def test_unknown_key_names_it():
    with pytest.raises(ConfigError, match="train.epochz"):
        load_config("cpu", ["train.epochz=2"])


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match="train.epochs"):
        load_config("cpu", ["train.epochs=many"])


def test_invalid_choice_names_key():
    with pytest.raises(ConfigError, match="train.device"):
        load_config("cpu", ["train.device=tpu"])


def test_override_without_equals_rejected():
    with pytest.raises(ConfigError, match="key=value"):
        load_config("cpu", ["train.epochs"])


def test_data_root_from_environment(monkeypatch):
    monkeypatch.setenv("DOGSCATS_DATA", "/data/elsewhere")
    assert load_config("cpu").data.root == "/data/elsewhere"
    assert load_config("cpu", ["data.root=/cli/wins"]).data.root == "/cli/wins"


def test_missing_config_lists_available():
    with pytest.raises(ConfigError, match="cpu_scratch"):
        load_config("no_such_experiment")


def test_yaml_is_parsed_safely(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("experiment: !!python/object/apply:os.system ['echo hacked']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(path)


@pytest.mark.parametrize("text, expected", [("false", False), ("True", True), ("x.pth", "x.pth"),
                                            ("efficientnet-lite0-package", "efficientnet-lite0-package")])
def test_parse_pretrained(text, expected):
    assert parse_pretrained(text) == expected
