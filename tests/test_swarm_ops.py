"""Swarm kernels: CPU (every instruction-set variant), emulated CUDA and the numpy reference
must agree bit for bit (the same Philox streams, no FMA contraction) in float64 and float32."""
import numpy as np
import pytest
import torch

from pyadv import _C, ops
from pyadv.reference import (de_select_reference, de_trial_reference, pixel_replace_reference, pso_step_reference,
                             sparse_perturb_reference, swarm_best_reference)
from pyadv.reference.philox import philox4x32_10

DTYPES = [torch.float64, torch.float32]
SHAPES = [(3, 5, 4), (2, 4, 1), (1, 7, 3), (0, 4, 3)]  # D = 1, N = 4 (smallest DE population), B = 0


def swarm(B, N, D, dtype, seed=0, degenerate=True):
    g = torch.Generator().manual_seed(seed)
    lo = -torch.rand(B, D, generator=g, dtype=torch.float64)
    hi = torch.rand(B, D, generator=g, dtype=torch.float64) + 0.5
    if degenerate and B and D > 1:
        hi[0, 1] = lo[0, 1]  # lo = hi pins a coordinate
    span = (hi - lo)[:, None]
    pos = lo[:, None] + torch.rand(B, N, D, generator=g, dtype=torch.float64) * span
    pbest = lo[:, None] + torch.rand(B, N, D, generator=g, dtype=torch.float64) * span
    vel = torch.randn(B, N, D, generator=g, dtype=torch.float64)
    gbest = lo + torch.rand(B, D, generator=g, dtype=torch.float64) * (hi - lo)
    return [t.to(dtype) for t in (pos, vel, pbest, gbest, lo, hi)]


def test_philox_known_answers():
    # Random123's known-answer vectors for Philox4x32-10.
    cases = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
             ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
             ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
              (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for ctr, key, expect in cases:
        got = philox4x32_10(*[np.array([c], dtype=np.uint64) for c in ctr], *key)
        assert tuple(int(w[0]) for w in got) == expect


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,N,D", SHAPES)
@pytest.mark.parametrize("boundary,vmax", [("clip", 0.0), ("reflect", 0.0), ("clip", 0.3), ("reflect", 0.5)])
def test_pso_step_exact(isa, dtype, B, N, D, boundary, vmax):
    pos, vel, pbest, gbest, lo, hi = swarm(B, N, D, dtype, seed=B + N + D)
    ids = torch.arange(B) * 3 + 1
    rp, rv = pso_step_reference(*(t.numpy() for t in (pos, vel, pbest, gbest, lo, hi)), 0.6, 2.0, 2.0, 11, 5,
                                boundary, vmax, ids=ids.numpy())
    p, v = pos.clone(), vel.clone()
    ops.pso_step(p, v, pbest, gbest, lo, hi, seed=11, step=5, boundary=boundary, vmax_frac=vmax, ids=ids)
    assert np.array_equal(p.numpy(), rp) and np.array_equal(v.numpy(), rv)
    pe, ve = pos.clone(), vel.clone()
    _C.emulated.pso_step(pe, ve, pbest, gbest, lo, hi, ids, 0.6, 2.0, 2.0, 11, 5, ops.BOUNDARIES[boundary], vmax)
    assert torch.equal(pe, p) and torch.equal(ve, v)
    assert torch.all(p >= lo[:, None]) and torch.all(p <= hi[:, None])
    if B and D > 1:
        assert torch.all(p[0, :, 1] == lo[0, 1]) and torch.all(v[0, :, 1] == 0)


def test_pso_random_numbers_follow_the_problem_id():
    pos, vel, pbest, gbest, lo, hi = swarm(3, 5, 4, torch.float64)
    p_all, v_all = pos.clone(), vel.clone()
    ops.pso_step(p_all, v_all, pbest, gbest, lo, hi, seed=2, step=1)
    p1, v1 = pos[1:2].clone(), vel[1:2].clone()  # problem 1 alone, as after compaction
    ops.pso_step(p1, v1, pbest[1:2], gbest[1:2], lo[1:2], hi[1:2], seed=2, step=1, ids=torch.tensor([1]))
    assert torch.equal(p1[0], p_all[1]) and torch.equal(v1[0], v_all[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,N,D", SHAPES)
def test_swarm_best_exact_with_nan_and_ties(dtype, B, N, D):
    pos, _, pbest, gbest, _, _ = swarm(B, N, D, dtype)
    g = torch.Generator().manual_seed(1)
    fit = torch.randint(0, 3, (B, N), generator=g).to(dtype)  # many ties
    if B:
        fit[0, 0] = float("nan")
    pbest_fit = torch.full((B, N), 1.5, dtype=dtype)
    gbest_fit = torch.full((B,), 0.5, dtype=dtype)
    if B > 1:
        gbest_fit[1] = -1.0  # an old best nothing beats
    ref = swarm_best_reference(*(t.numpy() for t in (pos, fit, pbest, pbest_fit, gbest, gbest_fit)))
    for run in (ops.swarm_best, _C.emulated.swarm_best):
        state = [t.clone() for t in (pbest, pbest_fit, gbest, gbest_fit)]
        run(pos, fit, *state)
        for got, want in zip(state, ref):
            assert np.array_equal(got.numpy(), want)
    if B:
        assert torch.isfinite(state[1][0, 0])  # NaN never entered a best


def test_swarm_best_ties_go_to_lowest_index():
    pos = torch.arange(12, dtype=torch.float64).view(1, 4, 3)
    fit = torch.tensor([[3.0, 1.0, 1.0, 2.0]], dtype=torch.float64)
    pb, pbf = pos.clone(), torch.full((1, 4), float("inf"), dtype=torch.float64)
    gb, gbf = torch.zeros(1, 3, dtype=torch.float64), torch.full((1,), float("inf"), dtype=torch.float64)
    ops.swarm_best(pos, fit, pb, pbf, gb, gbf)
    assert gbf.item() == 1.0 and gb[0].tolist() == [3.0, 4.0, 5.0]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("B,N,D", SHAPES)
@pytest.mark.parametrize("strategy", ["rand1", "best1"])
@pytest.mark.parametrize("CR,bounds", [(1.0, "resample"), (0.5, "resample"), (0.7, "clip")])
def test_de_trial_exact(isa, dtype, B, N, D, strategy, CR, bounds):
    pop, _, _, _, lo, hi = swarm(B, N, D, dtype, seed=3)
    best = torch.randint(0, N, (B,), generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(B, D, dtype=torch.bool)
    if D > 2:
        mask[:, 2] = True
        lo[:, 2], hi[:, 2] = 0, 9
        pop[:, :, 2] = torch.randint(0, 10, (B, N), generator=torch.Generator().manual_seed(5)).to(dtype)
    ids = torch.arange(B) + 7
    F = 1.7 if bounds == "clip" else 0.5  # a large F sends trials out of bounds
    ref = de_trial_reference(pop.numpy(), best.numpy(), lo.numpy(), hi.numpy(), F, CR, strategy, 9, 3,
                             int_mask=mask.numpy(), ids=ids.numpy(), bounds=bounds)
    got = ops.de_trial(pop, best, lo, hi, F=F, CR=CR, strategy=strategy, seed=9, step=3, int_mask=mask, ids=ids,
                       bounds=bounds)
    assert np.array_equal(got.numpy(), ref)
    emu = _C.emulated.de_trial(pop, best, lo, hi, mask, ids, F, CR, ops.DE_STRATEGIES[strategy],
                               ops.DE_BOUNDS[bounds], 9, 3)
    assert torch.equal(emu, got)
    assert torch.all(got >= lo[:, None]) and torch.all(got <= hi[:, None])
    if D > 2:
        assert torch.equal(got[:, :, 2], got[:, :, 2].round())


def test_de_partners_are_distinct_and_uniform():
    # Member i's partners (read back through a population whose rows are their indices).
    N = 6
    pop = torch.arange(N, dtype=torch.float64).view(1, N, 1).expand(1, N, 1).contiguous()
    lo, hi = torch.full((1, 1), -100.0, dtype=torch.float64), torch.full((1, 1), 100.0, dtype=torch.float64)
    counts = torch.zeros(N, N)
    for step in range(400):
        t = ops.de_trial(pop, torch.zeros(1, dtype=torch.long), lo, hi, F=1.0, CR=1.0, seed=1, step=step)
        # x_r1 + (x_r2 - x_r3) with F = 1 is an integer; r1 alone is recovered with F -> 0 below.
        t1 = ops.de_trial(pop, torch.zeros(1, dtype=torch.long), lo, hi, F=1e-9, CR=1.0, seed=1, step=step)
        r1 = t1[0, :, 0].round().long()
        counts[torch.arange(N), r1] += 1
        assert torch.all(r1 != torch.arange(N))
        assert torch.all((t[0, :, 0] - t1[0, :, 0]).abs() > 0.5)  # x_r2 - x_r3 != 0: r2 != r3
    assert torch.all(counts.diagonal() == 0)
    off = counts[~torch.eye(N, dtype=torch.bool)]
    assert off.min() > 40 and off.max() < 120  # 80 expected each


@pytest.mark.parametrize("dtype", DTYPES)
def test_de_select_exact(dtype):
    pop, _, trial, _, _, _ = swarm(3, 5, 4, dtype)
    g = torch.Generator().manual_seed(2)
    fit = torch.randn(3, 5, generator=g).to(dtype)
    tf = fit + torch.randn(3, 5, generator=g).to(dtype)
    tf[0, 0] = float("nan")
    tf[1, 1] = fit[1, 1]  # a tie is accepted, as in scipy
    rp, rf = de_select_reference(trial.numpy(), tf.numpy(), pop.numpy(), fit.numpy())
    for run in (ops.de_select, _C.emulated.de_select):
        p, f = pop.clone(), fit.clone()
        run(trial, tf, p, f)
        assert np.array_equal(p.numpy(), rp) and np.array_equal(f.numpy(), rf)
    assert torch.equal(p[1, 1], trial[1, 1]) and torch.equal(p[0, 0], pop[0, 0])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_range", [(0, None), (2, 5), (3, 3)])
def test_sparse_perturb_exact(dtype, n_range):
    g = torch.Generator().manual_seed(0)
    B, N, m, P = 3, 6, 5, 40
    base = torch.rand(B, P, generator=g).to(dtype)
    idx = torch.randint(0, P, (B, m), generator=g)
    idx[0, 1] = idx[0, 0]  # a repeated pixel adds up
    values = (torch.randn(B, N, m, generator=g) * 0.8).to(dtype)
    n0, n1 = n_range[0], n_range[1] if n_range[1] is not None else N
    ref = sparse_perturb_reference(base.numpy(), idx.numpy(), values.numpy(), n0, n1)
    got = ops.sparse_perturb(base, idx, values, n0, n_range[1])
    torch.testing.assert_close(got, torch.from_numpy(ref), rtol=0, atol=0)
    # the CUDA kernel adds a repeated pixel's values in slot order, as the CPU: the same bits
    assert torch.equal(_C.emulated.sparse_perturb(base, idx, values, n0, n1), got)
    buf = torch.full_like(got, 7.0)
    assert ops.sparse_perturb(base, idx, values, n0, n_range[1], out=buf) is buf and torch.equal(buf, got)
    assert got.shape == (B * (n1 - n0), P) and bool(((got >= 0) & (got <= 1)).all())


@pytest.mark.parametrize("dtype", DTYPES)
def test_pixel_replace_exact(dtype):
    g = torch.Generator().manual_seed(0)
    B, N, m, C, H, W = 2, 4, 3, 3, 5, 6
    base = torch.rand(B, C, H, W, generator=g).to(dtype)
    cand = torch.cat([torch.rand(B, N, m, 1, generator=g) * 7 - 1, torch.rand(B, N, m, 1, generator=g) * 8 - 1,
                      torch.randn(B, N, m, C, generator=g)], -1).to(dtype)  # rows/cols past the edges, values past [0, 1]
    ref = pixel_replace_reference(base.numpy(), cand.numpy())
    got = ops.pixel_replace(base, cand)
    assert np.array_equal(got.numpy(), ref)
    assert torch.equal(_C.emulated.pixel_replace(base, cand, 0, N), got)
    buf = torch.zeros_like(got)
    assert ops.pixel_replace(base, cand, out=buf) is buf and torch.equal(buf, got)
    with pytest.raises(ValueError, match="out must have shape"):
        ops.pixel_replace(base, cand, out=buf[1:])
    assert torch.equal(ops.pixel_replace(base, cand, 1, 3), got.view(B, N, C, H, W)[:, 1:3].reshape(-1, C, H, W))


def _bad(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def test_bad_input():
    pos, vel, pbest, gbest, lo, hi = swarm(2, 5, 3, torch.float64, degenerate=False)
    bad_lo = lo.clone()
    bad_lo[1, 2] = hi[1, 2] + 1
    _bad(lambda: ops.pso_step(pos, vel, pbest, gbest, bad_lo, hi), ValueError,
         "lo <= hi .* problem 1, dimension 2")
    _bad(lambda: ops.pso_step(pos, vel[:, :4], pbest, gbest, lo, hi), ValueError, r"vel must have shape \[B, N, D\]")
    _bad(lambda: ops.pso_step(pos, vel, pbest, gbest.float(), lo, hi), TypeError, "gbest must have pos's dtype")
    _bad(lambda: ops.pso_step(pos, vel, pbest, gbest, lo, hi, boundary="wrap"), ValueError, "boundary must be one of")
    _bad(lambda: ops.pso_step(pos, vel, pbest, gbest, lo, hi, ids=torch.tensor([0])), ValueError,
         r"ids must have shape \[B\]")
    _bad(lambda: ops.pso_step(pos.transpose(0, 1).contiguous().transpose(0, 1), vel, pbest, gbest, lo, hi),
         ValueError, "pos is updated in place and must be contiguous")
    small = pos[:, :3]
    _bad(lambda: ops.de_trial(small, torch.zeros(2, dtype=torch.long), lo, hi), ValueError,
         "needs a population of at least 4 .* got N = 3")
    _bad(lambda: ops.de_trial(pos, torch.zeros(2, dtype=torch.long), lo, hi, strategy="best1", int_mask=torch.ones(2, 3)),
         TypeError, "int_mask must be bool")
    _bad(lambda: ops.de_select(pos, torch.zeros(2, 4, dtype=torch.float64), pos.clone(), torch.zeros(2, 5, dtype=torch.float64)),
         ValueError, r"trial_fitness must have shape \[B, N\]")
    _bad(lambda: ops.swarm_best(pos, torch.zeros(2, 5), pbest, torch.zeros(2, 5, dtype=torch.float64), gbest,
                                torch.zeros(2, dtype=torch.float64)), TypeError, "fitness must have pos's dtype")
    base = torch.rand(2, 10, dtype=torch.float64)
    _bad(lambda: ops.sparse_perturb(base, torch.tensor([[0], [10]]), torch.zeros(2, 3, 1, dtype=torch.float64)),
         ValueError, r"idx must hold pixel indices in \[0, 10\)")
    _bad(lambda: ops.sparse_perturb(base, torch.tensor([[0], [1]]), torch.zeros(2, 3, 1, dtype=torch.float64), 2, 5),
         ValueError, r"candidate range \[2, 5\)")
    _bad(lambda: ops.pixel_replace(torch.rand(2, 3, 4, 4), torch.rand(2, 5, 1, 4)), ValueError,
         r"candidates must have shape \[B, N, m, 2 \+ C\]")


def test_opcheck():
    pos, vel, pbest, gbest, lo, hi = swarm(2, 5, 3, torch.float64, degenerate=False)
    torch.library.opcheck(torch.ops.pyadv.pso_step.default, (pos.clone(), vel.clone(), pbest, gbest, lo, hi, None,
                                                            0.6, 2.0, 2.0, 1, 1, 0, 0.0))
    fit = torch.rand(2, 5, dtype=torch.float64)
    torch.library.opcheck(torch.ops.pyadv.swarm_best.default,
                          (pos, fit, pbest.clone(), torch.full((2, 5), 9.0, dtype=torch.float64), gbest.clone(),
                           torch.full((2,), 9.0, dtype=torch.float64)))
    best = torch.zeros(2, dtype=torch.long)
    torch.library.opcheck(torch.ops.pyadv.de_trial.default, (pos, best, lo, hi, None, None, 0.5, 1.0, 0, 1, 1, 1))
    torch.library.opcheck(torch.ops.pyadv.de_select.default, (pbest, fit, pos.clone(), fit.clone() + 1))
    base = torch.rand(2, 10, dtype=torch.float64)
    torch.library.opcheck(torch.ops.pyadv.sparse_perturb.default,
                          (base, torch.tensor([[0, 3], [1, 2]]), torch.rand(2, 4, 2, dtype=torch.float64), 1, 3))
    torch.library.opcheck(torch.ops.pyadv.pixel_replace.default,
                          (torch.rand(2, 3, 4, 4, dtype=torch.float64), torch.rand(2, 5, 1, 5, dtype=torch.float64), 0, 5))
