"""The Jacobian-based saliency map attack (Papernot et al. 2016, "The Limitations of Deep Learning
in Adversarial Settings"; the Raissi notes, paper 003), with the pair saliency map of the
paper's practical version, and the single-feature saliency map behind the adversarial distance.

Each step of each image needs alpha = dZ_t/dx and beta = sum_{j != t} dZ_j/dx on the logits Z:
one forward and two backward passes (vector-Jacobian products) through the runner, not K.
The pair search over the P x P pairs of the search domain runs for a block of images at once
(torch ops over [n, P, P] blocks; no Python loop over pairs), and an image leaves the batch as
soon as it reaches its target, runs out of budget or of admissible pairs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._base import Attack, CommonOptions, RawResult, keyed_generator, option_error, register

#: floats per block of the pair search (n images x P x P); 2^23 floats = 32 MiB
_PAIR_BLOCK = 1 << 23


def target_gradients(runner, images, owners, target):
    """(alpha, beta, logits): alpha = dZ_t/dx and beta = sum_{j != t} dZ_j/dx, each [n, P] (P
    the features of an image), from one forward and two backward passes per image."""
    def cot(h, z, rows):
        e = torch.nn.functional.one_hot(target[rows], z.shape[1]).to(z.dtype)
        return None, torch.stack([e, 1 - e])

    g, _, z = runner.vjps(images, owners, cot)
    return g[0].flatten(1), g[1].flatten(1), z


def _pair_scores(a, b, d, increase: bool):
    """Best admissible pair of each row over all pairs of its features: (p, q, score) [n], score
    <= 0 where none is admissible. a, b, d: [n, L]; the [n, L, L] work is one block."""
    n, L = a.shape
    A = a[:, :, None] + a[:, None, :]
    Bm = b[:, :, None] + b[:, None, :]
    ok = (A > 0) & (Bm < 0) if increase else (A < 0) & (Bm > 0)
    ok &= d[:, :, None] & d[:, None, :]
    ok &= ~torch.eye(L, dtype=torch.bool, device=a.device)
    score = (A.mul_(Bm).neg_()).masked_fill_(~ok, -1.0)
    best, flat = score.flatten(1).max(1)
    return flat // L, flat % L, best


def _two_front(a, nb, d):
    """Features on the first two Pareto fronts of the points (a_i, nb_i) of the domain d (larger
    is better in both coordinates), [n, P] bool: a point on neither is weakly dominated by two
    others. Ties count as fronts, so the set can only be too large, never too small."""
    key, order = a.masked_fill(~d, -math.inf).sort(1, descending=True)
    v = nb.gather(1, order).masked_fill(~d.gather(1, order), -math.inf)
    first = v >= _prefix_max_before(v)
    v2 = v.masked_fill(first, -math.inf)
    second = (v2 >= _prefix_max_before(v2)) & ~first
    keep = (first | second) & d.gather(1, order) & torch.isfinite(key)
    return torch.zeros_like(d).scatter_(1, order, keep)


def _prefix_max_before(v):
    """max(v[:, :i]) for each i (-inf for i = 0)."""
    shifted = torch.cat([torch.full_like(v[:, :1], -math.inf), v[:, :-1]], 1)
    return shifted.cummax(1).values


def best_pairs(alpha, beta, domain, increase: bool):
    """Papernot et al.'s pair saliency map, maximised per image: over pairs p != q of the
    search domain, A = alpha_p + alpha_q and B = beta_p + beta_q must satisfy A > 0, B < 0
    (increasing features; A < 0, B > 0 when decreasing them), and the pair of largest -A B
    wins. Returns (p, q, found) [n]; found is False where no pair is admissible.

    Exact without scoring all P^2 pairs: -A B grows with A and with -B, so if a feature r
    weakly dominates p (alpha_r >= alpha_p, beta_r <= beta_p) and r is not p's partner q,
    the pair (r, q) scores at least as well as (p, q) and is admissible too. A best pair's
    features are therefore each dominated by at most one other feature: both lie on the first
    two Pareto fronts of the points (alpha_i, -beta_i), typically a few dozen of the P
    features, and only pairs among those are scored (ties may pick another pair of the same
    score)."""
    n, P = alpha.shape
    dev = alpha.device
    a, b = alpha.float(), beta.float()
    if not increase:  # the mirror image: decreasing features wants A < 0, B > 0
        a, b = -a, -b
    cand = _two_front(a, -b, domain)
    count = cand.sum(1)
    L = max(2, int(count.max()) if n else 2)
    # the candidates first (stable: in feature order), padded to the longest list
    idx = cand.to(torch.int8).argsort(dim=1, descending=True, stable=True)[:, :L]
    sel = cand.gather(1, idx)
    p_out = torch.zeros(n, dtype=torch.long, device=dev)
    q_out = torch.zeros_like(p_out)
    best = torch.full((n,), -1.0, device=dev)
    step = max(1, _PAIR_BLOCK // (L * L))
    for s in range(0, n, step):
        r = slice(s, s + step)
        p, q, sc = _pair_scores(a[r].gather(1, idx[r]), b[r].gather(1, idx[r]), sel[r], True)
        p_out[r], q_out[r], best[r] = idx[r].gather(1, p[:, None])[:, 0], idx[r].gather(1, q[:, None])[:, 0], sc
    return p_out, q_out, best > 0


def saliency_map(alpha, beta):
    """The single-feature saliency map of the notes: s_i = 0 where dZ_t/dx_i < 0 or
    sum_{j != t} dZ_j/dx_i > 0, else dZ_t/dx_i |sum_{j != t} dZ_j/dx_i|."""
    return torch.where((alpha < 0) | (beta > 0), torch.zeros_like(alpha), alpha * beta.abs())


@dataclass(frozen=True)
class JSMAOptions(CommonOptions):
    """theta: the change per step of each chosen feature, in (0, 1] to increase features (the
    paper's +1), in [-1, 0) to decrease them; upsilon: the largest fraction of an image's
    features (pixel components) changed, in (0, 1] (the paper's 14.5 % on MNIST): at most
    floor(upsilon P / 2) steps of two features each. Features reaching their bound (1 when
    increasing, 0 when decreasing) leave the search domain Gamma, as do those already there
    at the start. min_room: a feature counts as saturated once its room to move in theta's
    direction is at most min_room |theta| (default 0.01; 0: only at the bound itself): the saliency
    map scores a feature per unit of change, so without it a pixel at 0.995 wins a step and spends
    one of the upsilon P features on a change of 0.005 (resized and 8-bit images have many; at
    theta 1 this is the 0.99 cut-off of torchattacks' domain). Targeted; an untargeted call draws
    each image's target uniformly among the other classes (keyed by seed and the image's index,
    as cleverhans' default) and succeeds on any misclassification."""
    theta: float = 1.0
    upsilon: float = 0.145
    min_room: float = 0.01

    def __post_init__(self):
        super().__post_init__()
        t = self.theta
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t == 0 or abs(t) > 1:
            raise option_error("theta", t, "a number with 0 < |theta| <= 1 (positive: increase features, "
                                           "negative: decrease them)")
        u = self.upsilon
        if isinstance(u, bool) or not isinstance(u, (int, float)) or not (0 < u <= 1):
            raise option_error("upsilon", u, "a fraction of the features in (0, 1]")
        r = self.min_room
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not (0 <= r < 1):
            raise option_error("min_room", r, "a fraction of |theta| in [0, 1)")


@register("jsma")
class JSMA(Attack):
    """JSMA (Papernot et al. 2016) with the pair saliency map. ``extras``: ``aim`` (the class
    each image was pushed to), ``features_changed`` (distinct features changed) and
    ``steps_to_success`` (pair steps until the goal held; -1 where it never did)."""

    Options = JSMAOptions
    # the greedy pair choice follows the saliency map's exact order: with bf16 gradients it
    # fooled 8 points fewer digits within the same feature budget (benchmarks/precision.py),
    # so "auto" keeps float32
    auto_reduced = False

    def _aims(self, y, target, index, K):
        if target is not None:
            return target
        aim = torch.empty_like(y)
        for r, k in enumerate(index.tolist()):
            off = int(torch.randint(1, K, (1,), generator=keyed_generator(self.options.seed, k)))
            aim[r] = (int(y[r]) + off) % K
        return aim

    def _run(self, x, y, target, runner, index):
        o = self.options
        B = len(x)
        dev = x.device
        P = x[0].numel()
        increase = o.theta > 0
        max_steps = int(math.floor(o.upsilon * P / 2))
        K = runner.num_classes
        aim = self._aims(y, target, index, K)
        runner.expect(B * (max_steps + 1))
        adv = x.clone().flatten(1)
        tol = o.min_room * abs(o.theta)

        def has_room(v):
            return (1 - v if increase else v) > tol

        domain = has_room(adv)
        steps = torch.zeros(B, dtype=torch.long, device=dev)
        to_success = torch.full((B,), -1, dtype=torch.long, device=dev)
        active = torch.arange(B, device=dev)
        while len(active):
            imgs = adv[active].view(len(active), *x.shape[1:])
            alpha, beta, z = target_gradients(runner, imgs, active, aim[active])
            done = runner.hit(z, y[active], aim[active] if target is not None else None)
            to_success[active[done]] = steps[active[done]]
            go = ~done & (steps[active] < max_steps)
            active, alpha, beta = active[go], alpha[go], beta[go]
            if not len(active):
                break
            p, q, ok = best_pairs(alpha, beta, domain[active], increase)
            active, p, q = active[ok], p[ok], q[ok]
            for f in (p, q):
                v = (adv[active, f] + o.theta).clamp(0, 1)
                adv[active, f] = v
                domain[active, f] &= has_room(v)
            steps[active] += 1
        adv = adv.view_as(x)
        changed = (adv != x).flatten(1).sum(1)
        return RawResult(adv=adv, iterations=steps, search_success=to_success >= 0,
                         extras={"aim": aim, "features_changed": changed, "steps_to_success": to_success})
