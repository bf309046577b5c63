"""The package's face: what `import pyadv` gives a user, and the ops' registrations that
torch.compile and FakeTensorMode rely on."""
import subprocess
import sys

import torch

import pyadv


def test_subpackages_are_attributes_of_the_package():
    for name in ("ops", "metrics", "fi", "models", "data", "attacks", "evaluate", "defenses", "optim", "bench"):
        assert getattr(pyadv, name).__name__ == f"pyadv.{name}"
        assert name in dir(pyadv)
    try:
        pyadv.nope
    except AttributeError as e:
        assert "has no attribute 'nope'" in str(e)
    else:
        raise AssertionError("pyadv.nope did not raise")


def test_fake_kernels_are_registered_by_import_pyadv_alone():
    code = """
import torch, pyadv
from torch._subclasses.fake_tensor import FakeTensorMode
with FakeTensorMode():
    a = torch.empty(2, 3, 16, 16)
    s, m, p = torch.ops.pyadv.ssim_forward(a, a, 11, 1.5, 0.01, 0.03, 1.0, True, False)
    j = torch.empty(4, 10, 64)
    fi = torch.ops.pyadv.pixel_fi(j, torch.empty(4, 10), torch.zeros(4, dtype=torch.long))
print(tuple(s.shape), tuple(m.shape), tuple(fi.shape), pyadv.models.__name__)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["(2,)", "(2,", "3,", "6,", "6)", "(4,", "64)", "pyadv.models"]


def test_ssim_op_is_differentiable_itself():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 16, 16, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 1, 16, 16, generator=g, dtype=torch.float64, requires_grad=True)
    op = torch.ops.pyadv.ssim_forward
    assert torch.autograd.gradcheck(lambda a, b: op(a, b, 11, 1.5, 0.01, 0.03, 1.0, False, False)[0], (x, y))
    torch.library.opcheck(op, (x.detach().float().requires_grad_(), y.detach().float(), 11, 1.5, 0.01, 0.03, 1.0,
                               False, False))
