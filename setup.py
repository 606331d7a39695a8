"""Build hook: a wheel carries copies of conf/, pattern_library/ and examples/demo/ inside the package.

Those folders are edited where they are, at the top of the checkout; at build time they are copied to
pet_mtl/_shipped/ (see pet_mtl/core/resources.py), so `pip install .` and a built wheel work from any directory.
Editable installs skip the copy and read the checkout.
"""
import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SHIPPED = {"conf": "conf", "patterns": "pattern_library", "demo": "examples/demo"}  # as pet_mtl.core.resources.CHECKOUT_PATHS


class BuildPyWithShippedData(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return
        for name, source in SHIPPED.items():
            target = Path(self.build_lib) / "pet_mtl" / "_shipped" / name
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


setup(cmdclass={"build_py": BuildPyWithShippedData})
