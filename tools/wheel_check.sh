#!/usr/bin/env bash
# The path of a user who does not clone: `pip wheel --no-build-isolation .` (against the torch of
# the project's venv), the wheel installed into a fresh virtual environment with the same torch,
# and a smoke test there from outside the checkout: import, one op on the CPU and one emulated
# CUDA kernel, an attack, `pyadv info`. A few minutes on 2 cores; not part of .ci/run.
# Usage: [VENV=build/wheel-venv] tools/wheel_check.sh     Exit: 0 ok; 1 a step failed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=${VENV:-build/wheel-venv}
dist=$(mktemp -d)
trap 'rm -rf "$dist"' EXIT
step() { echo "wheel_check: $*"; }
py=.venv/bin/python
[ -x "$py" ] || { echo "wheel_check: run make build first (the wheel builds against .venv's torch)" >&2; exit 1; }
torch_spec="torch==$($py -c "import torch; print(torch.__version__.split('+')[0])")"
step "building the wheel"
$py -m pip wheel --no-build-isolation --no-deps -q -w "$dist" .
wheel=$(ls "$dist"/pyadv-*.whl)
step "built $(basename "$wheel") ($(du -h "$wheel" | cut -f1))"
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q "$torch_spec"
"$venv/bin/python" -m pip install -q "$wheel"
step "installed into $venv; smoke test from /"
(cd / && "$root/$venv/bin/python" - <<'PY'
import torch, pyadv
from pyadv import _C, ops
assert pyadv.__file__.startswith(__import__("sys").prefix), pyadv.__file__  # the installed copy
jac, probs = torch.randn(2, 10, 64), torch.softmax(torch.randn(2, 10), 1)
target = torch.tensor([1, 2])
cpu = ops.pixel_fi(jac, probs, target)
emu = _C.emulated.pixel_fi(jac, probs, target)
torch.testing.assert_close(cpu, emu)
from pyadv.attacks import FGS
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
r = FGS(model, eps=0.1)(torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 2]))
assert r.adv.shape == (3, 1, 8, 8)
print("wheel_check: smoke test ok:", pyadv.__version__, pyadv.info()["cpu_isa"])
PY
)
"$venv/bin/pyadv" info >/dev/null && step "pyadv info ok"
step "ok"
