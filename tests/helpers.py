"""Compose a real training config through Hydra's compose API (the same files the CLI reads)."""
from __future__ import annotations

from hydra import compose, initialize_config_dir

from pet_mtl.cli import CONF_DIR


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
