"""Builds the BPF objects into the package, so that an installed wheel finds
them (xdsr/bpf/*.o, see xdsr.paths). Everything else is in pyproject.toml.

A wheel build runs `make -C bpf` (clang -target bpf, libbpf-dev: see
scripts/install.sh) and copies bpf/build/*.o into the package. An editable
install skips it: it finds the objects in the source tree's bpf/build."""

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithBpf(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return
        subprocess.run(["make", "-C", str(ROOT / "bpf"), "-s"], check=True)
        dest = Path(self.build_lib) / "xdsr" / "bpf"
        dest.mkdir(parents=True, exist_ok=True)
        objects = sorted((ROOT / "bpf" / "build").glob("*.o"))
        if not objects:
            raise RuntimeError("make -C bpf built no objects")
        for obj in objects:
            shutil.copy2(obj, dest / obj.name)


setup(cmdclass={"build_py": BuildPyWithBpf})
