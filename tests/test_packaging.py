"""A built wheel, installed into a fresh virtual environment, runs the demo from a directory that has nothing of
the checkout: the configs, patterns and demo data ship inside the distribution."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: what a source distribution holds (MANIFEST.in and the package)
SOURCES = ["pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "pet_mtl", "conf", "pattern_library", "examples/demo"]


@pytest.mark.packaging
def test_the_wheel_runs_the_demo_from_an_unrelated_directory(tmp_path):
    # build from a clean copy of the sources: a build/ folder left in the checkout must not stand in for the build
    source = tmp_path / "source"
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / name, source / name)
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(dist), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    wheel = next(dist.glob("pet_mtl-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in ("pet_mtl/_shipped/conf/config.yaml", "pet_mtl/_shipped/conf/data/fewclue.yaml",
                    "pet_mtl/_shipped/patterns/tnews/verbalizers.yaml", "pet_mtl/_shipped/demo/TNEWS_train.csv",
                    "pet_mtl/metrics/macro_f1/macro_f1.py"):
        assert shipped in names, shipped

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        text=True).strip())
    # the wheel alone goes into the fresh environment; its dependencies (torch, transformers...) are borrowed from
    # this one by path (a .pth line adds a folder, not the editable install's import hook beside it)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, timeout=300)
    deps = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "_deps.pth").write_text("\n".join(sorted(deps)) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", PYTHONNOUSERSITE="1")
    where = subprocess.run([str(python), "-c", "import pet_mtl.core.resources as r; print(r.CONF_DIR)"], cwd=elsewhere,
                           env=env, capture_output=True, text=True, timeout=120)
    assert where.returncode == 0, where.stderr[-2000:]
    assert Path(where.stdout.strip()) == site / "pet_mtl" / "_shipped" / "conf"

    run_dir = elsewhere / "run"
    p = subprocess.run([str(python), "-m", "pet_mtl.train", "train.max_steps=2", "train.progress=false",
                        f"hydra.run.dir={run_dir}"], cwd=elsewhere, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads((run_dir / "metrics.json").read_text())["finished"] is True
    assert "tnews/topic.j2" in (run_dir / "checkpoint-best" / "config.yaml").read_text()
    assert (run_dir / "submission-a" / "submit.zip").is_file()
    p = subprocess.run([str(python), "-m", "pet_mtl.predict", f"checkpoint={run_dir}", "split=b",
                        f"output_dir={elsewhere / 'sub'}"], cwd=elsewhere, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert len((elsewhere / "sub" / "tnews_predict.json").read_text().splitlines()) > 0
