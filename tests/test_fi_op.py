"""The per-pixel FI op: CPU kernel (every instruction-set variant), emulated CUDA kernel and
the pure-PyTorch reference against each other, on random and edge inputs."""
import pytest
import torch
from hypothesis import given, settings, strategies as st

from pyadv import _C, ops
from pyadv.reference import pixel_fi_reference

GUARDS = [(0.0, 0.0), (1e-3, 1e-3), (1e-3, 0.0), (0.0, 0.05)]
TOL = {torch.float64: dict(rtol=1e-11, atol=1e-12), torch.float32: dict(rtol=2e-4, atol=1e-5)}


def make(B, K, P, dtype=torch.float64, seed=0, zero_prob=False):
    g = torch.Generator().manual_seed(seed)
    jac = torch.randn(B, K, P, generator=g, dtype=torch.float64)
    # Some pixels with tiny gradients, so the rank_tol cut-off has something to cut.
    jac[..., ::7] *= 1e-4
    probs = torch.softmax(3 * torch.randn(B, K, generator=g, dtype=torch.float64), 1)
    if zero_prob and K > 1:
        probs[:, 0] = 0.0
    target = torch.randint(0, K, (B,), generator=g)
    return jac.to(dtype), probs.to(dtype), target


def assert_fi_close(actual, expected, dtype):
    tol = TOL[dtype]
    scale = max(1.0, float(expected.abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual.double(), expected.double(), rtol=tol["rtol"], atol=tol["atol"] * scale)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps,rank_tol", GUARDS)
@pytest.mark.parametrize("B,K,P", [(3, 10, 784), (2, 7, 257), (1, 100, 300), (4, 3, 3072)])
def test_cpu_matches_reference(isa, dtype, eps, rank_tol, B, K, P):
    jac, probs, target = make(B, K, P, dtype, seed=B * K + P)
    out = ops.pixel_fi(jac, probs, target, eps=eps, rank_tol=rank_tol)
    assert out.dtype == dtype and out.shape == (B, P)
    assert_fi_close(out, pixel_fi_reference(jac, probs, target, eps, rank_tol), dtype)


@pytest.mark.parametrize("schedule", ["forward", "reverse"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps,rank_tol", GUARDS[:2])
def test_emulated_cuda_matches_cpu(schedule, dtype, eps, rank_tol):
    _C.emulated.set_schedule(schedule)
    try:
        jac, probs, target = make(3, 10, 300, dtype, seed=5)
        emulated = _C.emulated.pixel_fi(jac, probs, target, eps, rank_tol)
    finally:
        _C.emulated.set_schedule("forward")
    assert_fi_close(emulated, ops.pixel_fi(jac, probs, target, eps=eps, rank_tol=rank_tol), dtype)
    assert_fi_close(emulated, pixel_fi_reference(jac, probs, target, eps, rank_tol), dtype)


def test_exact_formula_by_hand():
    # One image, K = 2, P = 2: FI_i = J_t,i^2 / (P_0 J_0,i^2 + P_1 J_1,i^2).
    jac = torch.tensor([[[1.0, 0.0], [2.0, 0.0]]], dtype=torch.float64)
    probs = torch.tensor([[0.25, 0.75]], dtype=torch.float64)
    out = ops.pixel_fi(jac, probs, torch.tensor([1]))
    assert out.tolist() == [[4.0 / (0.25 * 1 + 0.75 * 4), 0.0]]
    guarded = ops.pixel_fi(jac, probs, torch.tensor([1]), eps=1e-3, rank_tol=1e-3)
    num = (0.75 * 2 / (0.75 + 1e-3)) ** 2
    den = 0.25**2 * 1 / (0.25**0.5 + 1e-3) ** 2 + 0.75**2 * 4 / (0.75**0.5 + 1e-3) ** 2
    assert guarded[0, 0].item() == pytest.approx(num / den, rel=1e-14)
    assert guarded[0, 1].item() == 0.0


# --- edge inputs, on CPU, emulated CUDA and the reference alike.

def run_all(jac, probs, target, eps=0.0, rank_tol=0.0):
    cpu = ops.pixel_fi(jac, probs, target, eps=eps, rank_tol=rank_tol)
    emu = _C.emulated.pixel_fi(jac, probs, target, eps, rank_tol)
    ref = pixel_fi_reference(jac, probs, target, eps, rank_tol)
    return cpu, emu, ref


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_gradients_give_zero(dtype):
    jac, probs, target = make(2, 5, 40, dtype)
    jac[:, :, 10:20] = 0
    for out in run_all(jac, probs, target):
        assert torch.all(out[:, 10:20] == 0)
        assert torch.all(torch.isfinite(out))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps,rank_tol", GUARDS)
def test_zero_probabilities(dtype, eps, rank_tol):
    jac, probs, target = make(3, 6, 50, dtype, zero_prob=True)
    target[0] = 0  # the objective's own class has probability 0
    cpu, emu, ref = run_all(jac, probs, target, eps, rank_tol)
    assert_fi_close(cpu, ref, dtype)
    assert_fi_close(emu, cpu, dtype)
    if eps > 0:  # the guard makes the numerator vanish with P_t
        assert torch.all(cpu[0] == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,K,P", [(3, 2, 20), (4, 5, 1), (1, 1, 9), (2, 2, 1)])
def test_small_shapes(dtype, B, K, P):
    jac, probs, target = make(B, K, P, dtype)
    cpu, emu, ref = run_all(jac, probs, target)
    assert_fi_close(cpu, ref, dtype)
    assert_fi_close(emu, ref, dtype)


def test_single_class_has_fi_one_where_gradient_nonzero():
    jac = torch.tensor([[[2.0, 0.0, -3.0]]])
    out = ops.pixel_fi(jac, torch.ones(1, 1), torch.zeros(1, dtype=torch.long))
    assert out.tolist() == [[1.0, 0.0, 1.0]]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_empty_batch(dtype):
    jac, probs, target = make(0, 4, 30, dtype)
    cpu, emu, ref = run_all(jac, probs, target)
    assert cpu.shape == emu.shape == (0, 30)


def test_empty_pixels():
    jac, probs, target = make(2, 4, 0)
    assert ops.pixel_fi(jac, probs, target).shape == (2, 0)


def test_exact_fi_is_scale_free_and_bounded_for_log_prob_gradients():
    # Real log-prob gradients satisfy sum_k P_k J_k = 0; then FI_i <= (1 - P_t) / P_t.
    jac, probs, target = make(4, 10, 200)
    jac = jac - (probs[:, :, None] * jac).sum(1, keepdim=True)
    out = ops.pixel_fi(jac, probs, target)
    bound = (1 - probs.gather(1, target[:, None])) / probs.gather(1, target[:, None])
    assert torch.all(out <= bound * (1 + 1e-12))
    assert torch.allclose(ops.pixel_fi(jac * 1e-6, probs, target), out, rtol=1e-9)


# --- chunked accumulation

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("chunk", [1, 3, 10])
@pytest.mark.parametrize("eps,rank_tol", GUARDS[:2])
def test_chunked_equals_full(dtype, chunk, eps, rank_tol):
    jac, probs, target = make(3, 10, 300, dtype, seed=11)
    acc = ops.FIAccumulator(probs, target, 300, eps=eps, rank_tol=rank_tol)
    for k0 in range(0, 10, chunk):
        acc.add(jac[:, k0:k0 + chunk])
    full = ops.pixel_fi(jac, probs, target, eps=eps, rank_tol=rank_tol)
    assert_fi_close(acc.result(), full, dtype)
    # The emulated CUDA accumulate/finish kernels give the same.
    num, den = torch.zeros(3, 300, dtype=dtype), torch.zeros(3, 300, dtype=dtype)
    for k0 in reversed(range(0, 10, chunk)):  # any order of chunks
        _C.emulated.fi_accumulate(jac[:, k0:k0 + chunk], probs, target, k0, eps, num, den)
    assert_fi_close(_C.emulated.fi_finish(num, den, rank_tol), full, dtype)


def test_chunk_must_fit():
    jac, probs, target = make(2, 10, 8)
    num, den = torch.zeros(2, 8, dtype=jac.dtype), torch.zeros(2, 8, dtype=jac.dtype)
    with pytest.raises(ValueError, match="k_offset 8 with a chunk of 3"):
        ops.fi_accumulate(jac[:, :3], probs, target, 8, num, den)
    with pytest.raises(ValueError, match="num must have shape"):
        ops.fi_accumulate(jac[:, :3], probs, target, 0, num[:1], den)
    with pytest.raises(ValueError, match="den is updated in place and must be contiguous"):
        ops.fi_accumulate(jac[:, :3], probs, target, 0, num, torch.zeros(8, 2, dtype=jac.dtype).t())


# --- layout, dtypes and bad input

def test_non_contiguous_inputs_are_copied():
    jac, probs, target = make(3, 5, 40)
    jac_t = jac.transpose(0, 2).contiguous().transpose(0, 2)
    assert not jac_t.is_contiguous()
    assert torch.equal(ops.pixel_fi(jac_t, probs[:, :].t().contiguous().t(), target), ops.pixel_fi(jac, probs, target))


def test_probs_cast_to_jac_dtype_and_int32_target():
    jac, probs, target = make(2, 4, 10, torch.float32)
    out = ops.pixel_fi(jac, probs.double(), target.int())
    assert out.dtype == torch.float32
    assert torch.equal(out, ops.pixel_fi(jac, probs, target))


@pytest.mark.parametrize("mutate,exc,match", [
    (lambda j, p, t: (j[0], p, t), ValueError, r"jac must have shape \[B, K, P\]"),
    (lambda j, p, t: (j, p[0], t), ValueError, r"probs must have shape \[B, K\]"),
    (lambda j, p, t: (j, p, t[:, None]), ValueError, r"target must have shape \[B\]"),
    (lambda j, p, t: (j, p[:1], t), ValueError, "probs has batch size 1 but jac has 2"),
    (lambda j, p, t: (j, p, t[:1]), ValueError, "target has batch size 1 but jac has 2"),
    (lambda j, p, t: (j, p[:, :3], t), ValueError, "jac has 4 classes but probs has 3"),
    (lambda j, p, t: (j.long(), p, t), TypeError, "jac must be a floating-point tensor"),
    (lambda j, p, t: (j.half(), p, t), TypeError, "jac must be float32 or float64"),
    (lambda j, p, t: (j, p.long(), t), TypeError, "probs must be a floating-point tensor"),
    (lambda j, p, t: (j, p, t.float()), TypeError, "target must be an integer tensor"),
    (lambda j, p, t: (j, p, torch.tensor([0, 4])), ValueError, r"target must hold class indices in \[0, 4\); image 1 has 4"),
    (lambda j, p, t: (j, p, torch.tensor([-1, 0])), ValueError, r"image 0 has -1"),
    (lambda j, p, t: (j, p.index_put((torch.tensor([1]), torch.tensor([2])), torch.tensor(float("nan"), dtype=p.dtype)), t),
     ValueError, "probs must be finite and in \\[0, 1\\]; image 1"),
    (lambda j, p, t: (j, p * 2, t), ValueError, "probs must be finite and in \\[0, 1\\]"),
    (lambda j, p, t: (j.index_put((torch.tensor([1]), torch.tensor([0]), torch.tensor([3])), torch.tensor(float("inf"), dtype=j.dtype)), p, t),
     ValueError, "jac holds NaN or Inf .* for image 1"),
    (lambda j, p, t: (j.index_put((torch.tensor([0]), torch.tensor([2]), torch.tensor([0])), torch.tensor(float("nan"), dtype=j.dtype)), p, t),
     ValueError, "jac holds NaN or Inf .* for image 0"),
    (lambda j, p, t: (j.to("meta"), p, t), ValueError, "probs is on cpu but jac is on meta"),
    (lambda j, p, t: (j, p, t.to("meta")), ValueError, "target is on meta but jac is on cpu"),
])
def test_bad_input(mutate, exc, match):
    jac, probs, target = make(2, 4, 10)
    args = mutate(jac, probs, target)
    with pytest.raises(exc, match=match):
        ops.pixel_fi(*args)


@pytest.mark.parametrize("kw,match", [(dict(eps=-1.0), "eps must be a finite number >= 0"),
                                      (dict(rank_tol=float("nan")), "rank_tol must be a finite number >= 0")])
def test_bad_guards(kw, match):
    jac, probs, target = make(2, 4, 10)
    with pytest.raises(ValueError, match=match):
        ops.pixel_fi(jac, probs, target, **kw)


def test_nan_in_emulated_kernel_is_reported():
    jac, probs, target = make(2, 4, 10)
    jac[1, 3, 5] = float("nan")
    with pytest.raises(ValueError, match="for image 1"):
        _C.emulated.pixel_fi(jac, probs, target, 0.0, 0.0)


def test_set_cpu_isa_rejects_unknown_names():
    with pytest.raises(ValueError, match="cpu isa 'sse9' is not usable here; allowed: baseline"):
        _C.set_cpu_isa("sse9")


# --- torch integration

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(dtype):
    jac, probs, target = make(3, 5, 40, dtype)
    torch.library.opcheck(torch.ops.pyadv.pixel_fi.default, (jac, probs, target, 1e-3, 1e-3))
    num, den = torch.zeros(3, 40, dtype=dtype), torch.zeros(3, 40, dtype=dtype)
    torch.library.opcheck(torch.ops.pyadv.fi_accumulate.default, (jac[:, 1:3], probs, target, 1, 0.0, num, den))
    torch.library.opcheck(torch.ops.pyadv.fi_finish.default, (num + 1, den + 1, 0.0))


@settings(max_examples=40, deadline=None)
@given(B=st.integers(0, 4), K=st.integers(1, 12), P=st.integers(1, 600), seed=st.integers(0, 2**16),
       dtype=st.sampled_from([torch.float32, torch.float64]), guard=st.sampled_from(GUARDS))
def test_property_cpu_matches_reference(B, K, P, seed, dtype, guard):
    jac, probs, target = make(B, K, P, dtype, seed=seed)
    out = ops.pixel_fi(jac, probs, target, eps=guard[0], rank_tol=guard[1])
    assert out.shape == (B, P) and out.dtype == dtype
    assert torch.all(out >= 0)
    assert_fi_close(out, pixel_fi_reference(jac, probs, target, *guard), dtype)
