"""Compose a real training config through Hydra's compose API (the same files the CLI reads)."""
from __future__ import annotations

from hydra import compose, initialize_config_dir

from pet_mtl.cli import CONF_DIR


def make_cfg(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))
