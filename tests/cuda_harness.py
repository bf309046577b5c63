"""One harness for every op on every backend: "cpu" (torch.ops.pyadv on CPU tensors), the
CUDA kernels under the emulator with each thread schedule ("emulated-forward",
"emulated-reverse", "emulated-warp_ahead"; blocks also run in reverse order in the second, and
every looped grid dimension is capped at two blocks so that each grid-stride and per-block
loop runs several passes), and "cuda" (torch.ops.pyadv on CUDA tensors; skipped with the reason when torch
sees no GPU).

Each case builds its inputs on the CPU; ``run(case, backend)`` calls the op and returns its
outputs (return value, then the tensors it mutates) on the CPU, for comparison with the CPU
op, which the op's own test file checks against the pure reference. Under the emulator every
input is placed inside a NaN-poisoned guard region (``guarded``): a read past either end
brings NaN into the output, and a write past either end is caught by the guard check.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable

import pytest
import torch

import pyadv  # noqa: F401  (registers the ops)
from pyadv import _C, ops

BACKENDS = ["cpu", "emulated-forward", "emulated-reverse", "emulated-warp_ahead", "cuda"]
GUARD = 64  # elements of poison before and after each buffer


def skip_without_cuda(backend: str) -> None:
    if backend == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device visible to torch: the CUDA cases run on a GPU machine (make test-gpu)")
    if backend == "cuda" and not pyadv.info().get("cuda_compiled", False):
        pytest.skip("pyadv was built without its CUDA kernels (PYADV_CUDA=0 or no nvcc at build time)")


@contextlib.contextmanager
def emulation(backend: str, grid_cap: int = 2):
    """The emulator's schedule for a backend, restored afterwards."""
    reverse = backend == "emulated-reverse"
    _C.emulated.set_schedule(backend.split("-", 1)[1] if backend.startswith("emulated-") else "forward")
    _C.emulated.set_block_order("reverse" if reverse else "forward")
    _C.emulated.set_loop_grid_cap(grid_cap)
    try:
        yield
    finally:
        _C.emulated.set_schedule("forward")
        _C.emulated.set_block_order("forward")
        _C.emulated.set_loop_grid_cap(0)


@dataclass
class Guarded:
    """A tensor's values inside a buffer with GUARD poisoned elements on each side."""
    buffer: torch.Tensor
    view: torch.Tensor
    poison: torch.Tensor = field(repr=False)

    def intact(self) -> bool:
        n = self.view.numel()
        head, tail = self.buffer[:GUARD], self.buffer[GUARD + n:]
        same = lambda a, b: bool(torch.equal(a.view(torch.uint8), b.view(torch.uint8))) if a.is_floating_point() \
            else bool(torch.equal(a, b))
        return same(head, self.poison[:GUARD]) and same(tail, self.poison[GUARD:])


def guarded(t: torch.Tensor) -> Guarded:
    """t copied into the middle of a larger buffer whose ends hold NaN (floats) or the most
    negative value (integers: an out-of-range index that an unguarded read would use)."""
    t = t.contiguous()
    fill = math.nan if t.is_floating_point() else torch.iinfo(t.dtype).min if t.dtype != torch.bool else True
    buf = torch.full((t.numel() + 2 * GUARD,), fill, dtype=t.dtype)
    buf[GUARD:GUARD + t.numel()] = t.flatten()
    poison = torch.cat([buf[:GUARD], buf[GUARD + t.numel():]]).clone()
    return Guarded(buf, buf[GUARD:GUARD + t.numel()].view(t.shape), poison)


@dataclass
class Case:
    """An op call: ``args`` (tensors and scalars, CPU), the positions of the arguments it
    mutates, the torch op and its emulated twin, and the comparison tolerance."""
    name: str
    op: Callable
    emulated: Callable
    args: list
    mutated: tuple = ()
    atol: float = 0.0
    rtol: float = 0.0


def run(case: Case, backend: str) -> list[torch.Tensor]:
    """The op's outputs on the CPU: its return value(s), then each mutated argument."""
    skip_without_cuda(backend)
    if backend.startswith("emulated"):
        guards = [guarded(a) if isinstance(a, torch.Tensor) and a.numel() else None for a in case.args]
        args = [g.view if g is not None else a for g, a in zip(guards, case.args)]
        with emulation(backend):
            out = case.emulated(*args)
        for i, g in enumerate(guards):
            if g is not None:
                assert g.intact(), f"{case.name}: a write past the ends of argument {i} ({backend})"
    else:
        dev = torch.device(backend)
        args = [a.clone().to(dev) if isinstance(a, torch.Tensor) else a for a in case.args]
        out = case.op(*args)
    outs = [] if out is None else list(out) if isinstance(out, (tuple, list)) else [out]
    outs += [args[i] for i in case.mutated]
    return [o.detach().cpu() for o in outs]


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def cases() -> list[Case]:
    """One or more cases per op, sized so that a cap of two blocks makes every loop run more
    than once (several planes, problems, rows or pairs per block)."""
    P = torch.ops.pyadv
    E = _C.emulated
    out = []
    # --- FI
    g = _gen(0)
    B, K, Pn = 3, 10, 700
    jac = torch.randn(B, K, Pn, generator=g, dtype=torch.float64)
    probs = torch.softmax(torch.randn(B, K, generator=g, dtype=torch.float64), 1)
    target = torch.randint(0, K, (B,), generator=g)
    out.append(Case("pixel_fi", P.pixel_fi, E.pixel_fi, [jac, probs, target, 0.0, 0.0], atol=1e-12, rtol=1e-9))
    num, den = torch.zeros(B, Pn, dtype=torch.float64), torch.zeros(B, Pn, dtype=torch.float64)
    out.append(Case("fi_accumulate", P.fi_accumulate, E.fi_accumulate, [jac, probs, target, 0, 0.0, num, den],
                    mutated=(5, 6), atol=1e-12, rtol=1e-9))
    out.append(Case("fi_finish", P.fi_finish, E.fi_finish,
                    [torch.rand(B, Pn, generator=g, dtype=torch.float64),
                     0.5 + torch.rand(B, Pn, generator=g, dtype=torch.float64), 0.0], atol=1e-12, rtol=1e-9))
    C, HW = 3, 300
    jg = torch.randn(B, K, C, HW, generator=g, dtype=torch.float64)
    ng = torch.zeros(B, C, HW, dtype=torch.float64)
    dg = torch.zeros(B, C * (C + 1) // 2, HW, dtype=torch.float64)
    out.append(Case("fi_group_accumulate", P.fi_group_accumulate, E.fi_group_accumulate,
                    [jg, probs, target, 0, 0.0, ng, dg], mutated=(5, 6), atol=1e-12, rtol=1e-9))
    # --- swarms
    B, N, D = 5, 160, 7
    lo, hi = -torch.rand(B, D, generator=g), torch.rand(B, D, generator=g)
    pos = lo[:, None] + torch.rand(B, N, D, generator=g) * (hi - lo)[:, None]
    vel = torch.randn(B, N, D, generator=g) * 0.1
    pbest, gbest = pos.clone(), pos[:, 0].clone()
    ids = torch.arange(B) * 3 + 1
    out.append(Case("pso_step", P.pso_step, E.pso_step,
                    [pos, vel, pbest, gbest, lo, hi, ids, 0.6, 2.0, 2.0, 11, 5, ops.BOUNDARIES["clip"], 0.0],
                    mutated=(0, 1)))
    # swarm_best with N >= 130 distinct fitness values, so its tree reduction spans several warps
    fit = torch.randperm(B * N, generator=g).view(B, N).float()
    out.append(Case("swarm_best", P.swarm_best, E.swarm_best,
                    [pos, fit, pbest.clone(), torch.full((B, N), 1e9), gbest.clone(), torch.full((B,), 1e9)],
                    mutated=(2, 3, 4, 5)))
    best = torch.randint(0, N, (B,), generator=g)
    out.append(Case("de_trial", P.de_trial, E.de_trial,
                    [pos, best, lo, hi, None, ids, 0.5, 0.9, ops.DE_STRATEGIES["rand1"], ops.DE_BOUNDS["clip"], 9, 3]))
    trial = pos + 0.01
    tf = torch.randn(B, N, generator=g)
    out.append(Case("de_select", P.de_select, E.de_select, [trial, tf, pos.clone(), torch.randn(B, N, generator=g)],
                    mutated=(2, 3)))
    Bs, Ns, m, Ps = 4, 9, 5, 120
    base = torch.rand(Bs, Ps, generator=g)
    idx = torch.randint(0, Ps, (Bs, m), generator=g)
    idx[:, 3] = idx[:, 1]  # repeated pixels add up, in slot order on every backend
    values = torch.randn(Bs, Ns, m, generator=g) * 0.5
    out.append(Case("sparse_perturb", P.sparse_perturb, E.sparse_perturb, [base, idx, values, 2, 8]))
    out.append(Case("sparse_perturb_out", P.sparse_perturb_out, E.sparse_perturb_out,
                    [base, idx, values, 2, 8, torch.full((Bs * 6, Ps), 7.0)], mutated=(5,)))
    Cc, H, W = 3, 5, 6
    img = torch.rand(3, Cc, H, W, generator=g)
    cand = torch.cat([torch.rand(3, 8, 2, 1, generator=g) * 7 - 1, torch.rand(3, 8, 2, 1, generator=g) * 8 - 1,
                      torch.randn(3, 8, 2, Cc, generator=g)], -1)
    out.append(Case("pixel_replace", P.pixel_replace, E.pixel_replace, [img, cand, 1, 7]))
    out.append(Case("pixel_replace_out", P.pixel_replace_out, E.pixel_replace_out,
                    [img, cand, 1, 7, torch.full((3 * 6, Cc, H, W), 7.0)], mutated=(4,)))
    # --- image: SSIM at every window size class (the 16-tile kernel up to 15, the 8-tile one above)
    for win in (3, 7, 11, 13, 15, 17, 31):
        side = win + 14
        x = torch.rand(2, 3, side, side + 3, generator=g, dtype=torch.float64)
        y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
        out.append(Case(f"ssim_forward_w{win}", P.ssim_forward, E.ssim_forward,
                        [x, y, win, 1.5, 0.01, 0.03, 1.0, True, False], atol=1e-10, rtol=1e-8))
        grad = torch.rand(2, generator=g, dtype=torch.float64)
        out.append(Case(f"ssim_backward_w{win}", P.ssim_backward, E.ssim_backward,
                        [grad, x, y, win, 1.5, 0.01, 0.03, 1.0], atol=1e-10, rtol=1e-8))
    wimg = torch.rand(3, 2, 17, 19, generator=g, dtype=torch.float64)
    M = torch.eye(3, dtype=torch.float64).repeat(3, 1, 1)
    M[:, :2, 2] += torch.randn(3, 2, generator=g, dtype=torch.float64)
    M[:, 2, :2] += 1e-3 * torch.randn(3, 2, generator=g, dtype=torch.float64)
    out.append(Case("warp_perspective", P.warp_perspective, E.warp_perspective, [wimg, M, 15, 21], atol=1e-12))
    for relu, pool, Cout in ((True, 2, 20), (False, 1, 33)):
        out.append(Case(f"sparse_conv_stage_p{pool}", P.sparse_conv_stage, E.sparse_conv_stage,
                        sparse_conv_args(g, G=3, N=5, H=9, W=8, Cin=3, Cout=Cout, k=(3, 5), pad=(1, 2), pool=pool,
                                         relu=relu), atol=1e-12, rtol=1e-10))
    eimg, etmpl = torch.rand(5, 3, 20, 23, generator=g, dtype=torch.float64), torch.rand(5, 20, 23, generator=g,
                                                                                        dtype=torch.float64)
    eM = torch.eye(3, dtype=torch.float64).repeat(5, 1, 1)
    eM[:, :2, 2] += 0.5 * torch.randn(5, 2, generator=g, dtype=torch.float64)
    for motion in range(4):
        out.append(Case(f"ecc_moments_m{motion}", P.ecc_moments, E.ecc_moments, [eimg, etmpl, eM, motion, 1, None],
                        atol=1e-8, rtol=1e-10))
    # two large pairs: each split over several blocks (blocks_per_pair), then the ordered reduction
    limg, ltmpl = torch.rand(2, 3, 70, 66, generator=g, dtype=torch.float64), torch.rand(2, 70, 66, generator=g,
                                                                                           dtype=torch.float64)
    for motion in (0, 3):
        out.append(Case(f"ecc_moments_split_m{motion}", P.ecc_moments, E.ecc_moments,
                        [limg, ltmpl, eM[:2].clone(), motion, 2, None], atol=1e-7, rtol=1e-10))
    # the whole alignment: photo pairs under small homographies (they converge well away from
    # the eps rule's edge, so the sums' order cannot change an iteration count) and a flat pair
    # (a zero Hessian: fails at once)
    from pyadv.data.pairs import warped_pairs
    from pyadv.metrics.ecc import _prepare

    wp = warped_pairs(16, 1, seed=5)
    flat = torch.full((1, 1, 16, 16), 0.5)
    sT, sS = _prepare(torch.cat([wp.template, flat]), torch.cat([wp.image, flat]), 5)
    sT, sS = sT.double(), sS.double()
    eye = torch.eye(3, dtype=torch.float64).repeat(len(sT), 1, 1)
    for motion, safeguards in ((0, False), (1, True), (3, True)):
        out.append(Case(f"ecc_solve_m{motion}", P.ecc_solve, E.ecc_solve,
                        [sS, sT, eye, motion, 2, 50, 1e-3, safeguards, True], atol=1e-8, rtol=1e-8))
    out.append(Case("ecc_solve_coarse_m3", P.ecc_solve, E.ecc_solve, [sS, sT, eye, 3, 2, 50, 1e-3, True, True, True],
                    atol=1e-8, rtol=1e-8))
    return out


def sparse_conv_args(g: torch.Generator, G: int, N: int, H: int, W: int, Cin: int, Cout: int, k=(3, 3), pad=(1, 1),
                     pool: int = 2, relu: bool = True, density: float = 0.3, dtype=torch.float64) -> list:
    """Arguments of sparse_conv_stage: G groups with random changed positions (group 0 none at
    all, the last every one), all pooled outputs wanted in a random order, one padding row."""
    kh, kw = k
    Hc, Wc = H + 2 * pad[0] - kh + 1, W + 2 * pad[1] - kw + 1
    Hp, Wp = Hc // pool, Wc // pool
    mask = torch.rand(G, H * W, generator=g) < density
    mask[0], mask[-1] = False, True
    rank = mask.long().cumsum(1) - 1
    slots = torch.where(mask, rank, -1).int()
    A = int(mask.sum(1).max())
    outpos = torch.stack([torch.randperm(Hp * Wp, generator=g) for _ in range(G)])
    outpos = torch.cat([outpos, torch.full((G, 1), -1)], 1).int()
    delta = torch.randn(G, N, A, Cin, generator=g, dtype=dtype)
    base = torch.randn(G, Hc * Wc, Cout, generator=g, dtype=dtype)
    weight = torch.randn(kh, kw, Cin, Cout, generator=g, dtype=dtype)
    return [delta, slots, outpos, base, weight, W, pad[0], pad[1], pool, relu]


def assert_same(got: list, want: list, case: Case, backend: str) -> None:
    assert len(got) == len(want), case.name
    for i, (a, b) in enumerate(zip(got, want)):
        assert a.shape == b.shape and a.dtype == b.dtype, (case.name, i, a.shape, b.shape, a.dtype, b.dtype)
        if a.is_floating_point():
            assert not torch.isnan(a).any() or torch.isnan(b).any(), f"{case.name}: NaN reached output {i} ({backend})"
        torch.testing.assert_close(a, b, atol=case.atol, rtol=case.rtol, equal_nan=True,
                                   msg=lambda m: f"{case.name} output {i} on {backend}: {m}")
