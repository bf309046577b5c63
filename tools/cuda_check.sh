#!/usr/bin/env bash
# Compiles every .cu file under csrc/ with plain nvcc for sm_80 and sm_90, with no torch
# include path, warnings as errors. Proves the CUDA sources build without a GPU or a CUDA torch.
# Usage: tools/cuda_check.sh [NVCC]   (exit 0: all compiled; 1: an error; 2: no nvcc)
set -euo pipefail
cd "$(dirname "$0")/.."
nvcc=${1:-${NVCC:-nvcc}}
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
  if "$nvcc" -c -std=c++17 -Werror all-warnings \
      -gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 \
      "$cu" -o "$out/$(echo "$cu" | tr / _).o"; then
    echo "cuda_check: ok   $cu"
  else
    echo "cuda_check: FAIL $cu" >&2
    status=1
  fi
done < <(find csrc -name '*.cu' | sort)
if [ "$n" -eq 0 ]; then
  echo "cuda_check: no .cu files found" >&2
  exit 1
fi
echo "cuda_check: $n file(s), $("$nvcc" --version | tail -1)"
exit $status
