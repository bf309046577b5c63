"""Sparse-RS (Croce, Andriushchenko, Singh, Flammarion and Hein 2022), its L0 attack: k pixels,
each set to a corner of the colour cube, improved by random search without gradients.

Per iteration every active image gets one candidate: a fraction alpha_i of its k pixels is
moved to pixels not yet perturbed, with new random corners; the candidate replaces the current
set when the margin loss (z_y - max_{j != y} z_j, or max_{j != t} z_j - z_t towards a target)
does not increase. alpha_i follows the authors' piecewise-constant L0 schedule over the query
budget (alpha_init / 2, / 4, / 5, / 6, / 8, / 10, / 12, / 15, / 20 after 50, 200, 500, 1000, 2000,
4000, 6000, 8000 of 10000 rescaled queries). An image stops at its first success. All
candidates of an iteration are rendered by one ``ops.pixel_replace`` call and classified in
one forward (the runner's chunks). Random numbers are a counter-based hash of (seed, image
index, iteration, slot): a result does not depend on the batch.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import ops
from ._base import Attack, CommonOptions, RawResult, int_option, option_error, pixel_budget_option, register

_SCHEDULE = ((50, 2), (200, 4), (500, 5), (1000, 6), (2000, 8), (4000, 10), (6000, 12), (8000, 15))


def alpha_schedule(alpha_init: float, it: int, n_queries: int) -> float:
    """The fraction of the k pixels resampled at iteration ``it`` of a ``n_queries`` budget."""
    t = int(it / n_queries * 10000)
    if t <= 0:
        return alpha_init
    for bound, div in _SCHEDULE:
        if t <= bound:
            return alpha_init / div
    return alpha_init / 20


def hashed_uniform(seed: int, keys: torch.Tensor, it: int, count: int) -> torch.Tensor:
    """[n, count] uniforms in [0, 1) from (seed, key, iteration, slot): a counter-based 31-bit
    integer hash (every product stays below 2^62, so int64 never overflows), the same numbers on
    any device and for any batch."""
    M = 0x7FFFFFFF
    slot = torch.arange(count, device=keys.device, dtype=torch.int64)
    c = (seed * 0x9E3779B1 + it * 0x85EBCA77) & M
    h = (((keys.to(torch.int64) & M) * 0x2C1B3C6D) & M)[:, None] ^ ((slot * 0x297A2D39) & M)[None, :] ^ c
    for mul in (0x6D2B79F5, 0x5BD1E995, 0x27D4EB2F, 0x165667B1):
        h = h ^ (h >> 15)
        h = (h * mul) & M
    return h.to(torch.float64) / float(1 << 31)


def _draws(P: int, k: int, m: int) -> int:
    """How many uniforms an iteration spends on choosing m new pixels among the P - k outside a
    set of k: m + k + 16 positions drawn with replacement (the first m distinct ones outside the
    set win) while that is well below P, else P (a uniform per pixel: the m smallest win). A
    function of (P, k, m) alone, so a result never depends on the batch."""
    R = m + k + 16
    return R if R * (R + k) <= 8 * P else P


def fresh_pixels(u: torch.Tensor, pix: torch.Tensor, m: int, P: int, redraw) -> torch.Tensor:
    """[n, m] distinct pixels outside each row of pix [n, k], uniformly at random, from the row's
    uniforms u [n, R] (R from ``_draws``). With R < P the draws are positions, and a row takes
    its first m that are neither in pix nor repeats of an earlier draw: hashing R of them costs
    far less than a uniform per pixel. A row short of m (improbable: each draw is invalid with
    chance below (k + R) / P) takes ``redraw(rows)`` [rows, P], a uniform per pixel from a
    stream of its own, as R = P does."""
    n, R = u.shape
    if R == P:
        return _smallest_outside(u, pix, m)
    cand = (u * P).long().clamp_(max=P - 1)
    seen = (cand[:, :, None] == pix[:, None, :]).any(2)
    seen |= (cand[:, :, None] == cand[:, None, :]).tril(-1).any(2)  # repeats an earlier draw
    rank = (~seen).cumsum(1)
    take = ~seen & (rank <= m)
    short = rank[:, -1] < m
    if not short.any():
        return cand[take].view(n, m)
    out = torch.empty(n, m, dtype=pix.dtype, device=pix.device)
    out[~short] = cand[~short][take[~short]].view(-1, m)
    out[short] = _smallest_outside(redraw(short), pix[short], m)
    return out


def _smallest_outside(u: torch.Tensor, pix: torch.Tensor, m: int) -> torch.Tensor:
    """The m pixels of smallest uniform u [n, P] outside pix, in order (topk: no full sort)."""
    score = u.clone()
    score.scatter_(1, pix, 2.0)  # never a pixel already in the set
    return score.topk(m, dim=1, largest=False, sorted=True).indices


@dataclass(frozen=True)
class SparseRSOptions(CommonOptions):
    """k: pixels perturbed (all channels of a pixel count as one); n_queries: the budget per
    image (default 10000, the authors'); alpha_init: the initial fraction of the k pixels
    resampled per iteration (0.3 here: the authors tune it per setting)."""
    k: int = 10
    n_queries: int = 10000
    alpha_init: float = 0.3

    def __post_init__(self):
        super().__post_init__()
        int_option("k", self.k, 1)
        int_option("n_queries", self.n_queries, 1)
        a = self.alpha_init
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0 < a <= 1:
            raise option_error("alpha_init", a, "a fraction in (0, 1]")


@register("sparse_rs")
class SparseRS(Attack):
    """Sparse-RS, L0 (Croce et al. 2022). ``result.extras``: ``pixels`` [B, k] (flat pixel
    indices row * W + col), ``margin`` [B] (the final margin loss; < 0 means misclassified)."""

    Options = SparseRSOptions

    def _check_call(self, x, y, target):
        pixel_budget_option("k", self.options.k, x)

    def _run(self, x, y, target, runner, index) -> RawResult:
        o = self.options
        B, C, H, W = x.shape
        dev = x.device
        P, k = H * W, o.k
        targeted = target is not None
        cls = target if targeted else y

        def margin(z, rows):
            zc = z.gather(1, cls[rows][:, None])[:, 0]
            other = z.scatter(1, cls[rows][:, None], float("-inf")).amax(1)
            return other - zc if targeted else zc - other  # < 0: success

        def candidates(pix, colours):
            """[n, 1, k * (2 + C)] for pixel_replace: (row, col, colour) per pixel."""
            rc = torch.stack([pix // W, pix % W], -1).to(x.dtype)
            return torch.cat([rc, colours.to(x.dtype)], -1).reshape(len(pix), 1, -1)

        def evaluate(pix, colours, rows):
            z = runner.probs_pixels(x[rows], candidates(pix, colours), rows, logits=True)[:, 0]
            # on the handicapped logits: below 0 only beyond the reduced precision's band
            return margin(runner.handicap(z, y[rows], target[rows] if targeted else None), rows)

        runner.expect(B * o.n_queries)  # many small forwards: worth the measured plan
        # Start: k distinct random pixels with random corners.
        u = hashed_uniform(o.seed, index, 0, P + k * C)
        pix = u[:, :P].argsort(dim=1, stable=True)[:, :k]
        colours = (u[:, P:].view(B, k, C) < 0.5).to(x.dtype)
        rows = torch.arange(B, device=dev)
        cur = evaluate(pix, colours, rows)
        iters = torch.ones(B, dtype=torch.long, device=dev)
        active = (cur >= 0).nonzero().flatten()
        for it in range(1, o.n_queries):
            if not len(active):
                break
            n = len(active)
            alpha = alpha_schedule(o.alpha_init, it, o.n_queries)
            m = max(1, min(k, int(alpha * k)))
            m = min(m, P - k) if P > k else 0
            new_pix, new_col = pix[active].clone(), colours[active].clone()
            if m:
                R = _draws(P, k, m)
                u = hashed_uniform(o.seed, index[active], it, k + R + m * C)
                # the m smallest draws, in order (topk: no full sort of P values per iteration)
                out_slots = u[:, :k].topk(m, dim=1, largest=False, sorted=True).indices  # which of the k pixels move
                # where they move to (a short row's fallback stream: a counter no iteration uses)
                in_pix = fresh_pixels(u[:, k:k + R], pix[active], m, P, lambda rows: hashed_uniform(
                    o.seed, index[active][rows], o.n_queries + it, P))
                new_pix.scatter_(1, out_slots, in_pix)
                new_col.scatter_(1, out_slots[..., None].expand(n, m, C),
                                 (u[:, k + R:].view(n, m, C) < 0.5).to(x.dtype))
            else:  # k covers every pixel: only the colours change
                u = hashed_uniform(o.seed, index[active], it, 2 * k * C)
                slots = u[:, :k * C].view(n, k, C) < alpha
                new_col = torch.where(slots, (u[:, k * C:].view(n, k, C) < 0.5).to(x.dtype), new_col)
            val = evaluate(new_pix, new_col, active)
            iters[active] += 1
            take = val <= cur[active]
            upd = active[take]
            pix[upd], colours[upd], cur[upd] = new_pix[take], new_col[take], val[take]
            active = active[cur[active] >= 0]
        adv = ops.pixel_replace(x.contiguous(), candidates(pix, colours).view(B, 1, k, 2 + C).contiguous())
        return RawResult(adv=adv.view_as(x), iterations=iters, search_success=cur < 0,
                         extras={"pixels": pix, "margin": cur.float()})


__all__ = ["SparseRS", "SparseRSOptions", "alpha_schedule", "hashed_uniform"]
