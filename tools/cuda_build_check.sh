#!/usr/bin/env bash
# The CUDA build configured for real, on a machine with nvcc and no GPU: a separate virtual
# environment with the CUDA build of the same torch version from PyPI (pip --isolated: the
# package index, not a local CPU wheel), pyadv built there with PYADV_CUDA=1 for sm_80 and
# sm_90 (compiling and linking need no GPU), imported, and pyadv.info() checked to report
# the CUDA kernels compiled and registered for every op. Several GB of downloads and about ten
# minutes on 2 cores: not part of .ci/run.
# Usage: [PYTHON=python3] [VENV=build/cuda-venv] [ARCHS="80;90"] tools/cuda_build_check.sh
# Exit: 0 built and checked; 1 a step failed; 2 no nvcc.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvcc >/dev/null 2>&1 || { echo "cuda_build_check: nvcc not found" >&2; exit 2; }
python=${PYTHON:-python3}
venv=${VENV:-build/cuda-venv}
archs=${ARCHS:-80;90}
torch_version=$(.venv/bin/python -c "import torch; print(torch.__version__.split('+')[0])" 2>/dev/null || echo 2.13.0)
step() { echo "cuda_build_check: $*"; }
step "venv $venv, torch==$torch_version (CUDA build from the package index), archs $archs"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --isolated -q "torch==$torch_version" numpy setuptools wheel cmake ninja \
  safetensors scikit-learn scipy matplotlib tqdm
"$venv/bin/python" - <<'PY'
import torch
assert torch.version.cuda, f"torch {torch.__version__} has no CUDA build"
print(f"cuda_build_check: torch {torch.__version__}, CUDA {torch.version.cuda}, GPU visible: {torch.cuda.is_available()}")
PY
# the toolkit behind nvcc (which may be a wrapper script elsewhere on PATH), for torch's FindCUDA
cuda_root=${CUDA_HOME:-$(dirname "$(dirname "$(grep -o '/[^ ]*/bin/nvcc' "$(command -v nvcc)" 2>/dev/null || command -v nvcc)")")}
cudart=$(ls "$cuda_root"/lib64/libcudart.so "$cuda_root"/lib/libcudart.so 2>/dev/null | head -1 || true)
# torch links nvrtc; a toolkit without it can use the copy of torch's own nvidia wheels
nvrtc=$(ls "$cuda_root"/lib64/libnvrtc.so* "$cuda_root"/lib/libnvrtc.so* \
        "$venv"/lib/python3*/site-packages/nvidia/*/lib/libnvrtc.so* 2>/dev/null | head -1 || true)
nvrtc=$(realpath "$nvrtc")
step "building pyadv with PYADV_CUDA=1 against the toolkit in $cuda_root"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git ls-files -z | xargs -0 -I{} cp --parents {} "$work"  # the tracked sources only: no CPU build mixed in
# the venv's CMake (the system's may predate CUDA 20 with this nvcc)
(cd "$work" && PATH="$OLDPWD/$venv/bin:$PATH" PYADV_CUDA=1 PYADV_CUDA_ARCHS="$archs" PYADV_BUILD_JOBS=2 \
  PYADV_CMAKE_ARGS="-DCUDA_TOOLKIT_ROOT_DIR=$cuda_root -DCUDAToolkit_ROOT=$cuda_root -DCUDA_INCLUDE_DIRS=$cuda_root/include -DCUDA_CUDART_LIBRARY=$cudart -DCUDA_nvrtc_LIBRARY=$nvrtc" \
  "$OLDPWD/$venv/bin/python" -m pip install --isolated --no-build-isolation --no-deps -q .)
# from outside the checkout, so that the installed package is imported, not ./pyadv
(cd / && "$OLDPWD/$venv/bin/python" - <<'PY'
import pyadv
info = pyadv.info()
assert info["cuda_compiled"], info
# CPU-only by design: on GPUs pyadv.metrics.ecc composes the pre-filtering from torch ops
cpu_only = {"ecc_prefilter"}
missing = [op for op, keys in info["ops"].items() if "CUDA" not in keys and op not in cpu_only]
assert not missing, f"ops without a CUDA kernel: {missing}"
print(f"cuda_build_check: ok: CUDA kernels compiled for {info['cuda_archs']}, {len(info['ops']) - len(cpu_only)} "
      f"of {len(info['ops'])} ops registered for CUDA ({', '.join(sorted(cpu_only))} CPU-only by design); "
      f"GPU usable here: {info['cuda_usable']}")
PY
)
