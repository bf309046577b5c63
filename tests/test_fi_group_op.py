"""The grouped FI ops (a pixel's C channel components as one perturbation): CPU kernel in
every instruction-set variant, emulated CUDA kernel and the eigen-decomposition reference."""
import pytest
import torch

from pyadv import _C, ops
from pyadv.reference import group_fi_reference

GUARDS = [(0.0, 0.0), (1e-3, 1e-3), (0.0, 0.3)]


def make(B, K, C, HW, dtype=torch.float64, seed=0, rank=None):
    g = torch.Generator().manual_seed(seed)
    jac = torch.randn(B, K, C, HW, generator=g, dtype=torch.float64)
    if rank is not None:  # channels that are combinations of `rank` others: a singular C x C metric
        mix = torch.randn(C, rank, generator=g, dtype=torch.float64)
        jac = torch.einsum("cr,bkrp->bkcp", mix, jac[:, :, :rank])
    probs = torch.softmax(2 * torch.randn(B, K, generator=g, dtype=torch.float64), 1)
    target = torch.randint(0, K, (B,), generator=g)
    return jac.to(dtype), probs.to(dtype), target


def run_cpu(jac, probs, target, eps, rank_tol, chunk=None):
    B, K, C, HW = jac.shape
    acc = ops.FIAccumulator(probs, target, HW, eps=eps, rank_tol=rank_tol, group=C, dtype=jac.dtype)
    for k0 in range(0, K, chunk or K):
        acc.add(jac[:, k0:k0 + (chunk or K)])
    return acc.result()


def run_emulated(jac, probs, target, eps, rank_tol):
    B, K, C, HW = jac.shape
    num = torch.zeros(B, C, HW, dtype=jac.dtype)
    den = torch.zeros(B, C * (C + 1) // 2, HW, dtype=jac.dtype)
    _C.emulated.fi_group_accumulate(jac, probs, target, 0, eps, num, den)
    return _C.emulated.fi_group_finish(num, den, rank_tol)


def close(a, b, dtype):
    scale = max(1.0, float(b.abs().max())) if b.numel() else 1.0
    tol = dict(rtol=1e-9, atol=1e-11 * scale) if dtype == torch.float64 else dict(rtol=2e-3, atol=1e-4 * scale)
    torch.testing.assert_close(a.double(), b.double(), **tol)


@pytest.mark.parametrize("C", [1, 2, 3, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps,rank_tol", GUARDS)
def test_cpu_and_emulated_match_reference(isa, C, dtype, eps, rank_tol):
    jac, probs, target = make(2, 7, C, 40, dtype, seed=C)
    ref = group_fi_reference(jac, probs, target, eps, rank_tol)
    close(run_cpu(jac, probs, target, eps, rank_tol, chunk=3), ref, dtype)
    if isa == _C.cpu_isa_supported()[0]:  # the emulator does not depend on the CPU variant
        close(run_emulated(jac, probs, target, eps, rank_tol), ref, dtype)


@pytest.mark.parametrize("C,rank", [(2, 1), (3, 1), (3, 2), (4, 2)])
def test_singular_metrics_use_the_pseudo_inverse(C, rank):
    jac, probs, target = make(3, 6, C, 30, seed=10 + C, rank=rank)
    ref = group_fi_reference(jac, probs, target)
    close(run_cpu(jac, probs, target, 0.0, 0.0), ref, torch.float64)
    close(run_emulated(jac, probs, target, 0.0, 0.0), ref, torch.float64)
    # The target's gradient lies in G's range, so FI is at most (1 - P_t)/P_t-like finite values.
    assert torch.all(torch.isfinite(ref))


def test_group_of_one_is_pixel_fi():
    jac, probs, target = make(3, 5, 1, 50)
    close(run_cpu(jac, probs, target, 0.0, 0.0), ops.pixel_fi(jac[:, :, 0], probs, target), torch.float64)


def test_zero_gradients_and_empty_batch():
    jac, probs, target = make(2, 4, 3, 20)
    jac[:, :, :, 5:9] = 0
    out = run_cpu(jac, probs, target, 0.0, 0.0)
    assert torch.all(out[:, 5:9] == 0)
    jac0, probs0, target0 = make(0, 4, 3, 20)
    assert run_cpu(jac0, probs0, target0, 0.0, 0.0).shape == (0, 20)
    assert run_emulated(jac0, probs0, target0, 0.0, 0.0).shape == (0, 20)


def test_rotation_invariance_of_the_channel_basis():
    # g^T G^+ g does not depend on the basis of the C-dimensional perturbation.
    jac, probs, target = make(2, 6, 3, 25, seed=4)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(9)))
    rotated = torch.einsum("dc,bkcp->bkdp", q, jac)
    close(run_cpu(rotated, probs, target, 0.0, 0.0), run_cpu(jac, probs, target, 0.0, 0.0), torch.float64)


@pytest.mark.parametrize("call,exc,match", [
    (lambda j, p, t, n, d: ops.fi_group_accumulate(j[:, :, 0], p, t, 0, n, d), ValueError, r"\[B, K, C, HW\]"),
    (lambda j, p, t, n, d: ops.fi_group_accumulate(torch.zeros(2, 4, 5, 20, dtype=j.dtype), p, t, 0, n, d),
     ValueError, "1 to 4 channels per pixel, got C = 5"),
    (lambda j, p, t, n, d: ops.fi_group_accumulate(j, p, t, 0, n[:, :2], d), ValueError, "num must have shape"),
    (lambda j, p, t, n, d: ops.fi_group_accumulate(j, p, t, 0, n, d[:, :5]), ValueError, "den must have shape"),
    (lambda j, p, t, n, d: ops.fi_group_accumulate(j, p, t, 3, n, d), ValueError, "k_offset 3 with a chunk of 4"),
    (lambda j, p, t, n, d: ops.fi_group_finish(n, d[:, :5]), ValueError, r"den must have shape \[B, C\(C\+1\)/2, HW\]"),
    (lambda j, p, t, n, d: ops.fi_group_finish(n, d.float()), TypeError, "den must have num's dtype"),
])
def test_bad_input(call, exc, match):
    jac, probs, target = make(2, 4, 3, 20)
    num, den = torch.zeros(2, 3, 20, dtype=jac.dtype), torch.zeros(2, 6, 20, dtype=jac.dtype)
    with pytest.raises(exc, match=match):
        call(jac, probs, target, num, den)


def test_nan_gradient_reported():
    jac, probs, target = make(2, 4, 3, 20)
    jac[1, 2, 1, 7] = float("inf")
    with pytest.raises(ValueError, match="for image 1"):
        run_cpu(jac, probs, target, 0.0, 0.0)
    with pytest.raises(ValueError, match="for image 1"):
        run_emulated(jac, probs, target, 0.0, 0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(dtype):
    jac, probs, target = make(2, 4, 3, 20, dtype)
    num, den = torch.zeros(2, 3, 20, dtype=dtype), torch.zeros(2, 6, 20, dtype=dtype)
    torch.library.opcheck(torch.ops.pyadv.fi_group_accumulate.default, (jac, probs, target, 0, 0.0, num, den))
    torch.library.opcheck(torch.ops.pyadv.fi_group_finish.default, (num + 1, den + 1, 0.0))
