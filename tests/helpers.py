"""Compose a real training config through Hydra's compose API (the same files the CLI reads)."""
from __future__ import annotations

import json
from pathlib import Path

from hydra import compose, initialize_config_dir

from pet_mtl.cli import CONF_DIR
from pet_mtl.core.tasks import TASKS

JSON_LABEL = {"0": "entailment", "1": "neutral", "2": "contradiction"}


def make_cfg(*overrides: str, plots: bool = False):
    """The config of `python -m pet_mtl.train <overrides>`, less the pictures unless asked for (drawing them is
    about 2 s a run, the largest fixed cost of the suite's many short runs; test_insight draws and checks them)."""
    extra = [] if any(o.startswith("train.plots=") for o in overrides) else [f"train.plots={str(plots).lower()}"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides) + extra)


def run_and_interrupt(cmd: list[str], env: dict, log_file, needle: str, timeout: float = 240):
    """Start `cmd`, send SIGINT (Ctrl-C) as soon as `log_file` shows `needle`, and return (exit status, stderr)."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline and needle not in (
            log_file.read_text(encoding="utf-8") if log_file.exists() else ""):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def run_and_kill(cmd: list[str], env: dict, state_file, timeout: float = 240) -> dict:
    """Start `cmd`, SIGKILL it as soon as `state_file` (a checkpoint's state.json) exists, and return that state:
    the kill lands wherever the run happens to be, as a real crash would."""
    import json
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not state_file.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    return json.loads(state_file.read_text())


def as_json(ex, labelled=True) -> str:
    """An example as a FewCLUE JSON line."""
    task = TASKS[ex.task]
    obj = {task.json_fields[f]: ex.fields[f] for f in task.fields}
    if labelled:
        obj["label"] = JSON_LABEL[ex.label] if ex.task == "ocnli" else int(ex.label)
    return json.dumps(obj, ensure_ascii=False) + "\n"


def write_fewclue(root: Path, data_dir: Path) -> Path:
    """FewCLUE-shaped files for ocnli and tnews (splits 0 and 1, unlabeled.json) whose texts are taken from the
    competition-format training files in `data_dir`."""
    from pet_mtl.data.readers import read_tsv

    for name in ("ocnli", "tnews"):
        rows = read_tsv(data_dir / TASKS[name].files["train"], TASKS[name], True)
        (root / name).mkdir(parents=True)
        for i, part in enumerate(("train_0", "dev_0", "train_1", "dev_1")):
            (root / name / f"{part}.json").write_text("".join(as_json(e) for e in rows[6 * i:6 * i + 6]), "utf-8")
        (root / name / "unlabeled.json").write_text("".join(as_json(e, False) for e in rows[24:30]), "utf-8")
    (root / "tnews" / "label_index2en2zh.json").write_text('{"100": "news_story"}\n', "utf-8")
    return root


def write_soft_patterns(root: Path) -> str:
    """A pattern root with one template per task that has learned tokens (soft(n) and soft(text)); returns the
    inline pattern set (`patterns={...}`) that uses them."""
    for task, source in {"tnews": "{{ soft(4) }}{{ title }}{{ soft('类别') }}{{ mask }}",
                         "ocemotion": "{{ soft(4) }}{{ text }}我感到很{{ mask }}",
                         "ocnli": "{{ soft(2) }}{{ premise }}？{{ mask }}，{{ hypothesis }}"}.items():
        (root / task).mkdir(parents=True, exist_ok=True)
        (root / task / "soft.j2").write_text(source, encoding="utf-8")
    return "{" + ", ".join(f"{t}: [{{template: {t}/soft.j2{', verbalizer: relation' if t == 'ocnli' else ''}}}]"
                           for t in ("ocnli", "ocemotion", "tnews")) + "}"
