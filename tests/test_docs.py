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


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """(file, module, arguments) of every `python -m pet_mtl.<hydra command>` the README and docs/ show: in bash
    blocks (continuation lines joined) and inline code."""
    import re
    import shlex

    found = []
    for doc in [DOCS.parent / "README.md", *sorted(DOCS.glob("*.md"))]:
        text = doc.read_text(encoding="utf-8")
        lines = [line.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)
                 for line in block.replace("\\\n", " ").splitlines()]
        lines += re.findall(r"`(python -m pet_mtl\.[^`]*)`", text)
        for line in lines:
            match = re.search(r"python -m (pet_mtl\.(train|predict|pretrain|distill|ipet))\b(.*)", line)
            if match:
                args = [a for a in shlex.split(match.group(3).split("#")[0]) if a not in ("...", "-m")]
                found.append((doc.name, match.group(1), args))
    return found


def test_every_documented_command_line_names_real_keys_with_values_of_their_type(capsys):
    """What the README and docs/ tell a user to type is accepted: each key exists and each value (placeholders
    like <run dir> aside) has the key's type. A renamed key that the docs still spell the old way fails here."""
    from pet_mtl import distill
    from pet_mtl.cli import check_group_choices, check_overrides
    from pet_mtl.core.config import Config, PredictConfig, PretrainConfig

    schemas = {"pet_mtl.predict": (PredictConfig, set(), {"files"}),
               "pet_mtl.pretrain": (PretrainConfig, set(), {"text"})}
    commands = documented_commands()
    assert len(commands) >= 25, commands
    for doc, module, args in commands:
        # a placeholder (<run dir>) stands for a value of the key's type: an interpolation, which every type takes
        args = [f"{a.partition('=')[0]}=${{oc.env:PLACEHOLDER}}" if "<" in a.partition("=")[2] else a for a in args]
        schema, groups, open_maps = schemas.get(module, (Config, {"patterns", "data"},
                                                         {"patterns", "train.task_weights"}))
        try:
            if module == "pet_mtl.distill":
                args = distill.main(args or ["teachers=[x]"])
            check_overrides(args, schema, groups, open_maps)
            if groups and not any(a.startswith("pattern_roots=") for a in args):
                check_group_choices(args, groups)
        except SystemExit:
            raise AssertionError(f"{doc}: python -m {module} {' '.join(args)}: {capsys.readouterr().err}") from None
