#!/usr/bin/env bash
# The CUDA compile check, for machines with nvcc and no GPU (nor a CUDA build of torch):
#  1. every .cu file under csrc/ through plain nvcc for sm_80 and sm_90, with no torch
#     include path and warnings as errors: kernels and raw-pointer launchers only;
#  2. when PYTHON names an interpreter whose torch ships its headers, every *_cuda.cpp op
#     file (the torch-side glue of the CUDA build) through g++ -fsyntax-only against torch's
#     and CUDA's headers, with a stand-in for the one header a CPU torch does not ship.
# Usage: [PYTHON=python] [NVCC=nvcc] tools/cuda_check.sh
# Exit: 0 all compiled; 1 an error; 2 no nvcc.
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc=${NVCC:-nvcc}
if ! command -v "$nvcc" >/dev/null 2>&1; then
  echo "cuda_check: nvcc not found" >&2
  exit 2
fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
n=0
while IFS= read -r cu; do
  n=$((n + 1))
  if "$nvcc" -c -std=c++20 -Werror all-warnings \
      -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
      "$cu" -o "$out/$(echo "$cu" | tr / _).o"; then
    echo "cuda_check: ok   nvcc $cu"
  else
    echo "cuda_check: FAIL nvcc $cu" >&2
    status=1
  fi
done < <(find csrc -name '*.cu' | sort)
if [ "$n" -eq 0 ]; then
  echo "cuda_check: no .cu files found" >&2
  exit 1
fi

if [ -n "${PYTHON:-}" ] && torch_inc=$("$PYTHON" -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'include'))" 2>/dev/null); then
  cuda_inc=$(dirname "$(dirname "$(command -v "$nvcc")")")/include
  [ -f "$cuda_inc/cuda_runtime.h" ] || cuda_inc=/usr/local/cuda/include
  mkdir -p "$out/stub/c10/cuda/impl"
  [ -f "$torch_inc/c10/cuda/impl/cuda_cmake_macros.h" ] || printf '#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n' > "$out/stub/c10/cuda/impl/cuda_cmake_macros.h"
  while IFS= read -r cpp; do
    if g++ -std=c++20 -fsyntax-only -I"$out/stub" -I"$torch_inc" -I"$torch_inc/torch/csrc/api/include" \
        -I"$cuda_inc" -Icsrc "$cpp"; then
      echo "cuda_check: ok   g++ -fsyntax-only $cpp"
    else
      echo "cuda_check: FAIL g++ -fsyntax-only $cpp" >&2
      status=1
    fi
  done < <(find csrc -name '*_cuda.cpp' | sort)
else
  echo "cuda_check: PYTHON with torch not given; torch-side CUDA glue not checked"
fi
echo "cuda_check: $n .cu file(s), $("$nvcc" --version | tail -1)"
exit $status
