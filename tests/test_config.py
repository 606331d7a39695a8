"""One source of config defaults (the dataclasses), and one place the training state is saved and restored."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from helpers import make_cfg
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pet_mtl.cli import CONF_DIR
from pet_mtl.core.config import (
    Config,
    DataConfig,
    PredictConfig,
    PretrainConfig,
    flatten,
)
from pet_mtl.training.state import TrainState, load_train_state, write_train_state
from pet_mtl.training.trainer import Trainer

SCHEMA_OF_GROUP = {"data": DataConfig}


def leaves(d: dict) -> dict[str, object]:
    return flatten(d) if d else {}


def test_the_default_run_is_exactly_the_dataclass_defaults():
    composed = OmegaConf.to_container(make_cfg(plots=True))  # the helper turns pictures off unless asked
    schema = OmegaConf.to_container(OmegaConf.structured(Config))
    composed.pop("patterns"), schema.pop("patterns")  # a config group (conf/patterns/*.yaml), not a default
    assert composed == schema
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        predict = compose(config_name="predict", overrides=["checkpoint=x"])
    assert OmegaConf.to_container(predict) == {**OmegaConf.to_container(OmegaConf.structured(PredictConfig)),
                                               "checkpoint": "x"}
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        pretrain = compose(config_name="pretrain", overrides=["out_dir=x"])
    assert OmegaConf.to_container(pretrain) == {**OmegaConf.to_container(OmegaConf.structured(PretrainConfig)),
                                                "out_dir": "x"}


@pytest.mark.parametrize("path", sorted(p for p in Path(CONF_DIR).rglob("*.yaml") if p.parent.name != "patterns"),
                         ids=lambda p: str(p.relative_to(CONF_DIR)))
def test_no_yaml_file_restates_a_default(path):
    """A YAML value equal to the dataclass default is a second source that can drift from the first."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    doc.pop("defaults", None)
    doc.pop("hydra", None)  # Hydra's own settings (where a run writes), not pet_mtl's config
    schema = SCHEMA_OF_GROUP.get(path.parent.name)
    top = path.parent == Path(CONF_DIR)
    if top:
        assert doc == {}, f"{path.name} sets values; put defaults in pet_mtl/config.py"
        return
    defaults = leaves(OmegaConf.to_container(OmegaConf.structured(schema)))
    restated = {k: v for k, v in leaves(doc).items() if k in defaults and defaults[k] == v}
    assert not restated, f"{path} restates dataclass defaults {restated}"
    assert set(leaves(doc)) <= set(defaults), f"{path}: keys the schema lacks {set(leaves(doc)) - set(defaults)}"


def test_the_whole_train_state_survives_save_and_resume(tiny_dir, synthetic_dir, tmp_path):
    """Every TrainState field, set to a value no fresh run has, comes back from checkpoint-last: a counter added to
    TrainState cannot be forgotten by save or resume."""
    def changed(f: dataclasses.Field):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        return {int: lambda: default + 7, float: lambda: default + 2.5, list: lambda: [{"step": 3, "score": 0.5}],
                type(None): lambda: 0.25, dict: lambda: {"corpus": {"draws": 3}}}[type(default)]()

    overrides = [f"model.path={tiny_dir}", f"data.dir={synthetic_dir}", "train.predict_splits=[]",
                 "train.progress=false", "train.max_steps=50"]
    first = Trainer(make_cfg(*overrides), tmp_path)
    first.state = TrainState(**{f.name: changed(f) for f in dataclasses.fields(TrainState)})
    first.state.world = 1
    assert all(getattr(first.state, f.name) != getattr(TrainState(), f.name) for f in dataclasses.fields(TrainState)
               if f.name != "world")
    tensors, saved = first.train_state()
    (tmp_path / "saved").mkdir()
    write_train_state(tmp_path / "saved", tensors, saved)  # through the files, as checkpoint-last holds it
    second = Trainer(make_cfg(*overrides), tmp_path / "second")
    second.restore_train_state(*load_train_state(tmp_path / "saved"), tmp_path / "saved")
    for f in dataclasses.fields(TrainState):
        if f.name == "wall_seconds":  # the first process's wall time is added on saving
            assert second.state.wall_seconds >= first.state.wall_seconds
        else:
            assert getattr(second.state, f.name) == getattr(first.state, f.name), f.name
