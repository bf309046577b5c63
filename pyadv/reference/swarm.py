"""Reference swarm kernels: plain numpy, loops where the kernels loop, the same Philox
streams and the same operation order, so float64 (and float32) results match the compiled
kernels bit for bit. Inputs and outputs are numpy arrays."""
from __future__ import annotations

import numpy as np

from .philox import below, draw, to_unit_double, to_unit_float, uniform2

PSO_STREAM, DE_INDEX_STREAM, DE_CROSS_STREAM, DE_BOUND_STREAM = 0, 1, 2, 3


def pso_step_reference(pos, vel, pbest, gbest, lo, hi, w, c1, c2, seed, step, boundary="clip", vmax_frac=0.0,
                       ids=None):
    """One PSO update (paper 000, eq. (2)-(4)); returns new (pos, vel). Problem b draws its
    numbers as problem ids[b] (default b). Coordinates with lo = hi are pinned (x = lo, v = 0)."""
    T = pos.dtype.type
    B, N, D = pos.shape
    ids = np.arange(B) if ids is None else np.asarray(ids)
    elem = (ids[:, None, None] * N * D + np.arange(N * D).reshape(1, N, D)).astype(np.uint64)
    elem = elem.reshape(-1)
    if pos.dtype == np.float32:  # one draw feeds two elements: words 0-1 the even, 2-3 the odd one
        words = draw(seed, step, elem >> np.uint64(1), PSO_STREAM)
        odd = (elem & np.uint64(1)).astype(bool)
        r1 = to_unit_float(np.where(odd, words[2], words[0]))
        r2 = to_unit_float(np.where(odd, words[3], words[1]))
    else:
        r1, r2 = uniform2(draw(seed, step, elem, PSO_STREAM), pos.dtype)
    r1, r2 = r1.reshape(B, N, D), r2.reshape(B, N, D)
    w, c1, c2, vmax_frac = T(w), T(c1), T(c2), T(vmax_frac)
    g, l, h = gbest[:, None, :], lo[:, None, :], hi[:, None, :]
    v = w * vel
    v = v + c1 * r1 * (pbest - pos)
    v = v + c2 * r2 * (g - pos)
    if vmax_frac > 0:
        vm = vmax_frac * (h - l)
        v = np.where(v > vm, vm, np.where(v < -vm, -vm, v))
    x = pos + v
    if boundary == "clip":
        below_lo, above_hi = x < l, x > h
        x = np.where(below_lo, l, np.where(above_hi, h, x))
        v = np.where(below_lo | above_hi, T(0), v)
    else:
        below_lo, above_hi = x < l, x > h
        x = np.where(below_lo, l + (l - x), np.where(above_hi, h - (x - h), x))
        v = np.where(below_lo | above_hi, -v, v)
        x = np.where(x < l, l, np.where(x > h, h, x))
    pinned = np.broadcast_to(~(h > l), x.shape)  # lo = hi: the coordinate is fixed
    x = np.where(pinned, l, x)
    v = np.where(pinned, T(0), v)
    return x.astype(pos.dtype), v.astype(pos.dtype)


def swarm_best_reference(pos, fit, pbest, pbest_fit, gbest, gbest_fit):
    """Returns updated copies (pbest, pbest_fit, gbest, gbest_fit); NaN fitness is +inf;
    ties go to the lowest member index."""
    pbest, pbest_fit, gbest, gbest_fit = (a.copy() for a in (pbest, pbest_fit, gbest, gbest_fit))
    B, N, _ = pos.shape
    for b in range(B):
        best, arg = gbest_fit[b], -1
        for n in range(N):
            f = np.inf if np.isnan(fit[b, n]) else fit[b, n]
            if f < pbest_fit[b, n]:
                pbest_fit[b, n] = f
                pbest[b, n] = pos[b, n]
            if pbest_fit[b, n] < best:
                best, arg = pbest_fit[b, n], n
        if arg >= 0:
            gbest_fit[b] = best
            gbest[b] = pbest[b, arg]
    return pbest, pbest_fit, gbest, gbest_fit


def _pick_excluding(word, n, excluded):
    r = int(below(word, n - len(excluded)))
    for e in sorted(excluded):
        if r >= e:
            r += 1
    return r


def de_trial_reference(pop, best, lo, hi, F, CR, strategy, seed, step, int_mask=None, ids=None, bounds="resample"):
    """Trial vectors: rand/1 (x_r1 + F (x_r2 - x_r3)) or best/1 (x_best + F (x_r1 - x_r2)),
    binomial crossover with CR and one forced coordinate, rounding of integer coordinates,
    out-of-bounds coordinates redrawn inside ("resample") or clipped ("clip")."""
    T = pop.dtype.type
    F, CR = T(F), T(CR)
    B, N, D = pop.shape
    trial = np.empty_like(pop)
    ids = np.arange(B) if ids is None else np.asarray(ids)
    for b in range(B):
        for i in range(N):
            row = int(ids[b]) * N + i
            u = [int(v[0]) for v in draw(seed, step, np.array([row], dtype=np.uint64), DE_INDEX_STREAM)]
            r1 = _pick_excluding(u[0], N, [i])
            r2 = _pick_excluding(u[1], N, [i, r1])
            r3 = _pick_excluding(u[2], N, [i, r1, r2]) if N > 3 else 0
            jrand = int(below(u[3], D))
            a, p, q = (int(best[b]), r1, r2) if strategy == "best1" else (r1, r2, r3)
            for d in range(D):
                take = CR >= 1 or d == jrand
                if not take:
                    cw = draw(seed, step, np.array([row * D + d], dtype=np.uint64), DE_CROSS_STREAM)
                    uc = to_unit_float(cw[0])[0] if pop.dtype == np.float32 else to_unit_double(cw[0], cw[1])[0]
                    take = uc < CR
                t = pop[b, a, d] + F * (pop[b, p, d] - pop[b, q, d]) if take else pop[b, i, d]
                integer = int_mask is not None and int_mask[b, d]
                if integer:
                    t = T(np.floor(t + T(0.5)))
                if bounds == "resample" and (t < lo[b, d] or t > hi[b, d]):
                    bw = draw(seed, step, np.array([row * D + d], dtype=np.uint64), DE_BOUND_STREAM)
                    u = uniform2(bw, pop.dtype)[0][0]
                    t = lo[b, d] + u * (hi[b, d] - lo[b, d])
                    if integer:
                        t = T(np.floor(t + T(0.5)))
                trial[b, i, d] = min(max(t, lo[b, d]), hi[b, d])
    return trial


def de_select_reference(trial, trial_fit, pop, fit):
    """Greedy selection: a trial replaces its member when its fitness is <= (NaN is +inf)."""
    pop, fit = pop.copy(), fit.copy()
    tf = np.where(np.isnan(trial_fit), np.inf, trial_fit)
    keep = tf <= fit
    fit[keep] = tf[keep]
    pop[keep] = trial[keep]
    return pop, fit


def sparse_perturb_reference(base, idx, values, n_begin=0, n_end=None):
    """[B * (n_end - n_begin), P]: each base image plus a candidate's values at its pixels,
    those pixels clamped to [0, 1]."""
    B, P = base.shape
    n_end = values.shape[1] if n_end is None else n_end
    out = []
    for b in range(B):
        for n in range(n_begin, n_end):
            img = base[b].copy()
            for j in range(idx.shape[1]):
                img[idx[b, j]] += values[b, n, j]
            for j in range(idx.shape[1]):
                img[idx[b, j]] = min(max(img[idx[b, j]], 0), 1)
            out.append(img)
    return np.stack(out) if out else np.zeros((0, P), base.dtype)


def pixel_replace_reference(base, cand, n_begin=0, n_end=None):
    """[B * (n_end - n_begin), C, H, W]: copies of each base image with a candidate's pixels
    (row, col rounded and clamped to the image; values clamped to [0, 1]) written in order."""
    B, C, H, W = base.shape
    n_end = cand.shape[1] if n_end is None else n_end
    out = []
    for b in range(B):
        for n in range(n_begin, n_end):
            img = base[b].copy()
            for j in range(cand.shape[2]):
                y = int(min(max(np.floor(cand[b, n, j, 0] + 0.5), 0), H - 1))
                x = int(min(max(np.floor(cand[b, n, j, 1] + 0.5), 0), W - 1))
                img[:, y, x] = np.clip(cand[b, n, j, 2:], 0, 1)
            out.append(img)
    return np.stack(out) if out else np.zeros((0, C, H, W), base.dtype)
