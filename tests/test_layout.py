"""The import contract: folders are stages, and data flows one way through them.

Read from the source (every import statement, module-level or inside a function), so it holds for code paths no
other test runs. The stages, lowest first: core and metrics; data; prompts; backbones; methods; inference;
training; pretraining; then the entry points at the top of the package.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pet_mtl"
STAGES = ["core", "metrics", "data", "prompts", "backbones", "methods", "inference", "training", "pretraining"]
RANK = {"core": 0, "metrics": 0, "data": 1, "prompts": 2, "backbones": 3, "methods": 4, "inference": 5,
        "training": 6, "pretraining": 7}
TOP = len(STAGES)  # entry points: train.py, predict.py, ... may import anything


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "_shipped" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports(name: str, path: Path) -> set[str]:
    """The pet_mtl modules `name` imports (a `from pkg import sub` of a submodule counts as the submodule)."""
    known = modules()
    out = set()
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("pet_mtl")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("pet_mtl"):
                continue
            subs = {f"{target}.{a.name}" for a in node.names} & set(known)
            out |= subs or {target}
    return {m for m in out if m != name}


def stage(module: str) -> int:
    parts = module.split(".")
    return RANK.get(parts[1], TOP) if len(parts) > 1 and parts[1] in RANK else TOP


GRAPH = {name: imports(name, path) for name, path in modules().items()}


def closure(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for m in GRAPH.get(todo.pop(), ()):
            if m not in seen:
                seen.add(m)
                todo.append(m)
    return seen


def test_every_folder_is_a_stage():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))}
    assert folders <= set(STAGES), f"a folder that is no stage: {sorted(folders - set(STAGES))}"


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if stage(m) < TOP))
def test_no_module_imports_a_higher_stage(module):
    higher = sorted(m for m in GRAPH[module] if stage(m) > stage(module))
    assert not higher, f"{module} (stage {stage(module)}) imports a higher stage: {higher}"


def test_inference_never_reaches_training():
    for module in (m for m in GRAPH if m.startswith("pet_mtl.inference")):
        reached = sorted(m for m in closure(module) if m.startswith(("pet_mtl.training", "pet_mtl.pretraining")))
        assert not reached, f"{module} reaches {reached}"


def test_pretraining_reaches_neither_patterns_nor_featurizers():
    for module in (m for m in GRAPH if m.startswith("pet_mtl.pretraining")):
        reached = sorted(m for m in closure(module) if m.startswith(("pet_mtl.prompts", "pet_mtl.methods")))
        assert not reached, f"{module} reaches {reached}"


def test_the_typed_config_imports_nothing_of_the_project():
    assert GRAPH["pet_mtl.core.config"] == set()


def test_code_that_only_writes_files_does_not_load_the_template_engine():
    for module in ("pet_mtl.core.io", "pet_mtl.training.runlog", "pet_mtl.inference.calibration",
                   "pet_mtl.training.state"):
        reached = sorted(m for m in closure(module) if m.startswith(("pet_mtl.prompts", "pet_mtl.methods")))
        assert not reached, f"{module} reaches {reached}"


def test_the_checker_sees_a_violation(tmp_path):
    """The contract's own oracle: an import that climbs is found (so a passing run means something)."""
    bad = tmp_path / "pet_mtl" / "core" / "bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text("def f():\n    from pet_mtl.training.loop import Loop\n    from ..inference import predictor\n")
    found = imports("pet_mtl.core.bad", bad)
    assert "pet_mtl.training.loop" in found and stage("pet_mtl.training.loop") > stage("pet_mtl.core.bad")
    assert any(m.startswith("pet_mtl.inference") for m in found)
