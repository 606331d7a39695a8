"""The documentation that is generated from the code is what the code says today."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

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


# ------------------------------------------------------------------ every documented command, run at smoke size

#: the example run directory the docs write (the README's train command makes it; predict and the API read it)
EXAMPLE_RUN = "outputs/2026-11-25/10-00-00"
#: lines of the docs' bash blocks that this test does not run, and why; a new line that is neither run nor listed
#: here fails the test
NOT_RUN = {
    'pip install torch==2.13.0 -e ".[test]" && python -m pet_mtl.train':
        "CI itself: .ci/run installs from the project's files; tests/test_cli.py and tests/test_packaging.py run the "
        "embedded default",
    "python -m pytest -q": "CI itself",
    'pip install -e ".[joblib]"': "an extra the test environment does not install",
    'pip install -e ".[slurm]"': "an extra the test environment does not install",
    "python -m pet_mtl.train -m hydra/launcher=joblib": "needs the joblib launcher extra",
    "python -m pet_mtl.train -m hydra/launcher=submitit_slurm": "needs a SLURM cluster",
    "torchrun --nproc_per_node=2 -m pet_mtl.train": "tests/test_distributed.py runs torchrun with two processes",
}
#: what makes a documented command a smoke run: the shared backbones and data become the tests' tiny ones, and
#: training stops after two steps of four rows (values replace the command's own)
TRAIN_SMOKE = {"train.max_steps": "2", "train.batch_size": "4", "train.eval_every": "0", "train.progress": "false",
               "train.plots": "false", "train.predict_splits": "[]", "data.max_train_per_task": "8",
               "data.val_size": "30", "data.max_val_per_task": "6", "data.held_out_per_task": "6",
               "data.k_per_class": "2",
               "train.mlm_batch_size": "2", "distill.max_rows_per_task": "6"}
PRETRAIN_SMOKE = {"train.max_steps": "2", "train.batch_size": "2", "data.eval_docs": "4", "train.progress": "false"}
WORKBENCH_SMOKE = {"--rows": "12", "--candidates": "20"}


def bash_lines(doc: Path) -> list[str]:
    """The command lines of a document's bash blocks (continuation lines joined, comments dropped)."""
    import re

    text = doc.read_text(encoding="utf-8")
    lines = [line.split(" # ")[0].strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)
             for line in block.replace("\\\n", " ").splitlines()]
    return [" ".join(line.split()) for line in lines if line]


def smoke_argv(line: str, paths: dict[str, str], new_run_dir) -> tuple[str, list[str]]:
    """(module, arguments) of a documented command made a smoke run: paths swapped, sweeps cut to two values,
    the smoke keys set; `new_run_dir()` names a fresh run directory."""
    import os
    import shlex

    for old, new in sorted(paths.items(), key=lambda kv: -len(kv[0])):
        line = line.replace(old, new)
    words = [os.path.expanduser(w) if w.startswith("~/") else w for w in shlex.split(line) if w != "..."]
    assert words[:2] == ["python", "-m"], line
    module, args = words[2], words[3:]
    if module in ("pet_mtl.train", "pet_mtl.distill", "pet_mtl.ipet", "pet_mtl.pretrain"):
        smoke = dict(PRETRAIN_SMOKE if module == "pet_mtl.pretrain" else TRAIN_SMOKE)
        if module == "pet_mtl.ipet":  # one generation of the first variant, then the student
            smoke["ipet.generations"] = "1"
            args = [a if not a.startswith("ipet.variants=") else
                    "ipet.variants=" + str(__import__("yaml").safe_load(a.partition("=")[2])[:1]) for a in args]
        if "-m" in args:  # a sweep: two values of each swept key
            args = [a if "=" not in a or "[" in a or "," not in a else
                    a.partition("=")[0] + "=" + ",".join(a.partition("=")[2].split(",")[:2]) for a in args]
        keys = {a.lstrip("+").partition("=")[0] for a in args}
        if "data=fewclue" in args:
            smoke["data.fewclue_dir"] = paths["../shared/data/fewclue"]
            smoke.setdefault("data.dir", paths["../shared/data/tianchi"])
        if module != "pet_mtl.pretrain" and "-m" not in args and "hydra.run.dir" not in keys:
            smoke["hydra.run.dir"] = new_run_dir() if Path(EXAMPLE_RUN).exists() else EXAMPLE_RUN
        args = [a for a in args if a.lstrip("+").partition("=")[0] not in smoke]
        args += [f"{k}={v}" for k, v in smoke.items()]
    elif module == "pet_mtl.patterns":
        for flag, value in WORKBENCH_SMOKE.items():
            if flag in args:
                args[args.index(flag) + 1] = value
            elif args[0] == "search-verbalizers":
                args += [flag, value]
    return module, args


def run_module(module: str, args: list[str]) -> None:
    """`python -m <module> <args>` in this process, as the interpreter runs it (the module's __main__ block)."""
    import runpy
    import sys

    argv = sys.argv
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as e:
        assert e.code in (0, None), f"python -m {module} {' '.join(args)}: exit {e.code}"
    finally:
        sys.argv = argv


@pytest.fixture(scope="module")
def smoke_paths(tiny_dir, synthetic_dir, fewclue_dir, tmp_path_factory):
    """The shared folders the docs name, as the tests' tiny stand-ins."""
    import gzip

    import zoo
    from conftest import FILLER, KEYS, pattern_texts

    root = tmp_path_factory.mktemp("doc-stand-ins")
    zoo.build("bert_decoder", root / "clm", [FILLER, KEYS] + pattern_texts())
    (root / "corpus").mkdir()
    with gzip.open(root / "corpus" / "news.txt.gz", "wt", encoding="utf-8") as f:
        f.writelines(FILLER[i:i + 40] + "\n" for i in range(0, len(FILLER) - 40, 7))
    return {"../shared/models/zh-mini-mlm": str(tiny_dir), "../shared/models/zh-mini-clm": str(root / "clm"),
            "../shared/data/tianchi": str(synthetic_dir), "../shared/data/fewclue": str(fewclue_dir),
            "../shared/data/corpus": str(root / "corpus"), "<run dir>": EXAMPLE_RUN, "<other run dir>": EXAMPLE_RUN}


DOCUMENTS = ["README.md", *sorted(p.name for p in DOCS.glob("*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_command_a_document_shows_runs_at_smoke_size(document, smoke_paths, trained_run, tmp_path,
                                                          monkeypatch):
    """Each bash line of the README and docs/ runs, in order, in one working directory (what one command writes the
    next reads: a pretrained model, a sweep, saved scores), as `python -m` runs it, on the tiny model and data and
    for two steps: a renamed key, a changed flag or a command that no longer works fails here."""
    import shutil

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/my_patterns
    if document != "README.md":  # the README's own train command makes the example run; the guides start with one
        shutil.copytree(trained_run, EXAMPLE_RUN)
        for teacher in ("runs/pet-p1", "runs/pet-p2", "runs/pet-p3"):
            shutil.copytree(trained_run, teacher)
    doc = DOCS.parent / document if document == "README.md" else DOCS / document
    counter = iter(range(1, 100))
    ran = 0
    for line in bash_lines(doc):
        if any(line.startswith(prefix) for prefix in NOT_RUN):
            continue
        run_module(*smoke_argv(line, smoke_paths, lambda: f"runs/doc-{next(counter)}"))
        ran += 1
    assert ran or document not in ("README.md", "training.md", "predict.md", "patterns.md", "few-shot.md")
    if document == "README.md":
        assert (tmp_path / EXAMPLE_RUN / "checkpoint-best").is_dir()
        assert (tmp_path / EXAMPLE_RUN / "predict-b" / "submit.zip").is_file()


def test_every_line_left_unrun_is_still_in_the_docs():
    shown = [line for doc in [DOCS.parent / "README.md", *DOCS.glob("*.md")] for line in bash_lines(doc)]
    for prefix in NOT_RUN:
        assert any(line.startswith(prefix) for line in shown), f"NOT_RUN lists a line no document shows: {prefix}"


def test_the_readme_quotes_the_headline_table_of_the_results_as_it_stands():
    """The README's figures are the headline table of benchmarks/RESULTS.md, row for row: a new measurement
    updates both or the README goes stale here."""
    import re

    def table(text: str) -> str:
        return re.search(r"(?m)^\| system \| whole files.*?(?=\n\n)", text, flags=re.S).group(0)

    results = (DOCS.parent / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    assert table((DOCS.parent / "README.md").read_text(encoding="utf-8")) == table(results)
