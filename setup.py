"""Builds pyadv._C with CMake and Ninja against the installed torch (CMakeExtension pattern).

Environment switches:
  PYADV_CUDA=auto|1|0     build CUDA kernels when possible (default), always, or never
  PYADV_CUDA_ARCHS="80;90"  CUDA architectures of the CUDA build
  PYADV_BUILD_TYPE=Release  CMake build type
  PYADV_BUILD_JOBS=N        parallel compile jobs (default: all cores)
  PYADV_CMAKE_ARGS="..."    further CMake configure arguments (e.g. -DCUDA_TOOLKIT_ROOT_DIR=...)
"""
import os
import shlex
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name: str):
        super().__init__(name, sources=[])


def _cuda_switch() -> str:
    value = os.environ.get("PYADV_CUDA", "auto").strip().lower()
    table = {"auto": "auto", "1": "ON", "on": "ON", "true": "ON", "0": "OFF", "off": "OFF", "false": "OFF"}
    if value not in table:
        raise SystemExit(f"PYADV_CUDA must be auto, 1 or 0, got {value!r}")
    return table[value]


class CMakeBuild(build_ext):
    def build_extension(self, ext: Extension) -> None:
        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = ROOT / "build" / f"cmake-py{sys.version_info.major}{sys.version_info.minor}"
        build_dir.mkdir(parents=True, exist_ok=True)
        cfg = os.environ.get("PYADV_BUILD_TYPE", "Release")
        configure = [
            "cmake", "-S", str(ROOT), "-B", str(build_dir), "-G", "Ninja",
            f"-DCMAKE_BUILD_TYPE={cfg}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
            f"-DPYADV_CUDA={_cuda_switch()}",
        ]
        if "PYADV_CUDA_ARCHS" in os.environ:
            configure.append(f"-DPYADV_CUDA_ARCHS={os.environ['PYADV_CUDA_ARCHS']}")
        # further configure arguments, e.g. where the CUDA toolkit is when nvcc is a wrapper
        configure += shlex.split(os.environ.get("PYADV_CMAKE_ARGS", ""))
        build = ["cmake", "--build", str(build_dir), "--target", "_C"]
        jobs = os.environ.get("PYADV_BUILD_JOBS")
        if jobs:
            build += ["--parallel", jobs]
        subprocess.run(configure, check=True)
        subprocess.run(build, check=True)


setup(ext_modules=[CMakeExtension("pyadv._C")], cmdclass={"build_ext": CMakeBuild})
