"""The documentation that is generated from the code is what the code says today."""
from __future__ import annotations

import importlib.util
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_configuration_reference_lists_every_key_as_the_typed_configs_define_it():
    spec = importlib.util.spec_from_file_location("config_reference", DOCS / "config_reference.py")
    reference = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reference)
    text = reference.render()
    assert (DOCS / "configuration.md").read_text(encoding="utf-8") == text, \
        "docs/configuration.md is stale: run python docs/config_reference.py"
    for key in ("train.patience", "train.report_to", "train.device", "model.path", "checkpoint", "masking.prob"):
        assert f"| `{key}` |" in text
