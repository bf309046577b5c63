"""Batched differential evolution: one population per problem, many problems at once."""
from __future__ import annotations

from typing import Optional

import torch

from .. import ops
from ._swarm import BatchedOptimizer, Objective, Tracker, as_bounds, check_common, evaluate, uniform_in


class DE(BatchedOptimizer):
    """Minimises B independent problems with differential evolution (Storn and Price), in the
    form Su et al.'s one-pixel attack uses (paper 003): rand/1 mutation with F = 0.5, a
    population of 400, no crossover (CR = 1), greedy selection, synchronous generations.
    ``strategy="best1"`` and binomial crossover (CR < 1) are available. A trial coordinate that
    leaves the bounds is redrawn uniformly inside (``bounds="resample"``, scipy's handling, the
    default: clipping piles the population on the bounds and measurably slows convergence, see
    the note in tests/test_optim.py) or clipped (``bounds="clip"``).

    The objective contract, early stop, NaN handling, determinism and inspectable state
    (``pop``, ``fit``, ``active``, ``iteration``, ``tracker``) are those of
    :class:`pyadv.optim.PSO`; ``keys`` [B] (an attack's global image indices) key each problem's
    random stream instead of its batch position. ``integer_mask`` [D] or [B, D] marks coordinates rounded to
    integers (pixel coordinates). ``init_pop`` [B, N, D] replaces the uniform initial
    population; :func:`one_pixel_population` draws Su et al.'s.

    ``reuse_known=True``: a trial equal, coordinate for coordinate, to a member of its
    population takes that member's fitness instead of an evaluation, and the objective is
    called as ``objective(trial, ids, need=need)`` with ``need`` [b, N] False there (it may
    return anything at those entries; a done mask must come from the needed ones). Without
    crossover a population that has converged keeps proposing its own members: on the one-pixel
    attack's 8x8 digits a quarter of all trials, half of them in the last 50 generations.
    ``tracker.evaluations`` counts the evaluations made, ``tracker.reused`` the others.
    """

    def __init__(self, objective: Objective, lo, hi, *, pop_size: int = 400, batch: Optional[int] = None,
                 F: float = 0.5, CR: float = 1.0, strategy: str = "rand1", bounds: str = "resample",
                 integer_mask=None, seed: int = 0,
                 init_pop: Optional[torch.Tensor] = None, history: bool = False, dtype: Optional[torch.dtype] = None,
                 device=None, keys: Optional[torch.Tensor] = None, reuse_known: bool = False):
        if strategy not in ops.DE_STRATEGIES:
            raise ValueError(f"strategy must be one of {sorted(ops.DE_STRATEGIES)}, got {strategy!r}")
        n_min = 4 if strategy == "rand1" else 3
        check_common(pop_size, 0, seed, n_min, f"pop_size ({strategy} needs the member and distinct partners)")
        if bounds not in ops.DE_BOUNDS:
            raise ValueError(f"bounds must be one of {sorted(ops.DE_BOUNDS)}, got {bounds!r}")
        if not 0 <= CR <= 1:
            raise ValueError(f"CR must be in [0, 1], got {CR!r}")
        if not F > 0:
            raise ValueError(f"F must be > 0, got {F!r}")
        dtype = dtype or (init_pop.dtype if init_pop is not None else torch.float32)
        self.lo, self.hi = as_bounds(lo, hi, batch, dtype, device)
        B, D = self.lo.shape
        self.int_mask = None
        if integer_mask is not None:
            m = torch.as_tensor(integer_mask, dtype=torch.bool, device=self.lo.device)
            m = m.expand(B, D) if m.dim() == 1 else m
            if m.shape != (B, D):
                raise ValueError(f"integer_mask must be [D] or [B, D] = [{B}, {D}], got {tuple(m.shape)}")
            self.int_mask = m.contiguous()
        self.objective, self.seed = objective, seed
        self.keys = None if keys is None else torch.as_tensor(keys, device=self.lo.device).long()
        if self.keys is not None and self.keys.shape != (B,):
            raise ValueError(f"keys must name each of the {B} problems once, shape [{B}], got {tuple(self.keys.shape)}")
        self.options = dict(F=F, CR=CR, strategy=strategy, bounds=bounds)
        self.reuse_known = bool(reuse_known)
        self.tracker = Tracker(B, D, dtype, self.lo.device, history)
        if init_pop is not None:
            pop = torch.as_tensor(init_pop, dtype=dtype, device=self.lo.device)
            if tuple(pop.shape) != (B, pop_size, D):
                raise ValueError(f"init_pop must have shape [{B}, {pop_size}, {D}], got {tuple(pop.shape)}")
        else:
            pop = uniform_in(self.lo, self.hi, pop_size, torch.Generator().manual_seed(seed))
        if self.int_mask is not None:
            pop = torch.where(self.int_mask[:, None], torch.floor(pop + 0.5), pop)
        self.pop = torch.minimum(torch.maximum(pop, self.lo[:, None]), self.hi[:, None]).contiguous()
        self.active = torch.arange(B, device=self.lo.device)
        self.iteration = 0
        fit, done = evaluate(objective, self.pop, self.active)
        self.fit = torch.where(torch.isnan(fit), torch.full_like(fit, float("inf")), fit)
        self.tracker.evaluations += pop_size
        self._finish(done)

    def _best(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = torch.argmin(self.fit, dim=1)  # the first minimum: ties go to the lowest index
        return idx, self.pop[torch.arange(len(idx), device=idx.device), idx], self.fit.gather(1, idx[:, None])[:, 0]

    _state = ("pop", "fit", "lo", "hi", "active", "int_mask")

    def _finish(self, done: torch.Tensor) -> None:
        _, best_pos, best_fit = self._best()
        self.tracker.record(self.active, best_pos, best_fit, self.iteration)
        self._drop(done)

    def step(self) -> None:
        """One generation for every active problem."""
        if len(self.active) == 0:
            return
        self.iteration += 1
        best_idx, _, _ = self._best()
        trial = ops.de_trial(self.pop, best_idx, self.lo, self.hi, seed=self.seed, step=self.iteration,
                             int_mask=self.int_mask, ids=self.active if self.keys is None else self.keys[self.active],
                             **self.options)
        if self.reuse_known:
            known, known_fit = known_members(trial, self.pop, self.fit)
            trial_fit, done = evaluate(lambda c, ids: self.objective(c, ids, need=~known), trial, self.active)
            trial_fit = torch.where(known, known_fit, trial_fit)
            n_known = known.sum(1)
            self.tracker.reused[self.active] += n_known
            self.tracker.evaluations[self.active] += trial.shape[1] - n_known
        else:
            trial_fit, done = evaluate(self.objective, trial, self.active)
            self.tracker.evaluations[self.active] += trial.shape[1]
        ops.de_select(trial, trial_fit, self.pop, self.fit)
        self._finish(done)


def known_members(trial: torch.Tensor, pop: torch.Tensor, fit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(known [b, N], their fitness [b, N]): which trials equal a member of their own problem's
    population, coordinate for coordinate, and that member's fitness. A trial's key (``_keys``)
    is looked up among its population's sorted keys and the match confirmed coordinate by
    coordinate: O(N log N) per problem rather than N^2 comparisons."""
    b, N, D = pop.shape
    kp, order = _keys(pop).sort(1)
    j = torch.searchsorted(kp, _keys(trial)).clamp_(max=N - 1)
    member = order.gather(1, j)
    known = (pop.gather(1, member[..., None].expand(b, N, D)) == trial).all(-1)
    return known, fit.gather(1, member)


def _keys(c: torch.Tensor) -> torch.Tensor:
    """A key [b, N] per candidate: its D coordinates, in float64, dotted with fixed incommensurate
    weights. Equal candidates get equal keys; unequal ones almost never do, and a collision
    only costs an evaluation, since a match is confirmed coordinate by coordinate."""
    D = c.shape[-1]
    w = torch.arange(1, D + 1, dtype=torch.float64, device=c.device).sqrt() * 0.6180339887498949 + 1
    return c.to(torch.float64) @ w


def one_pixel_population(batch: int, pop_size: int, height: int, width: int, channels: int, *, pixels: int = 1,
                         seed: int = 0, dtype=torch.float32, device=None, keys=None,
                         value_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Su et al.'s initial population for the one-pixel attack: per pixel a row and a column
    uniform over the image (their U(1, 32) on 32x32 CIFAR images) and channel values normal
    around the middle grey (their N(128, 127) on 0-255, here N(0.502, 0.498) on [0, 1],
    clipped). Returns (init_pop [B, N, pixels * (2 + C)], lo, hi [B, D], integer_mask [B, D])
    for :class:`DE`, each pixel as (row, col, value per channel). ``keys`` [B]: each problem's
    population drawn from its own stream (an attack's image indices), else one stream for all;
    ``value_scale``: the values' range is [0, value_scale] (255: grey levels, as the paper)."""
    S = 2 + channels

    def draw(gen, n):
        rows = torch.rand(n, pop_size, pixels, 1, generator=gen, dtype=torch.float64) * (height - 1)
        cols = torch.rand(n, pop_size, pixels, 1, generator=gen, dtype=torch.float64) * (width - 1)
        vals = (128 + 127 * torch.randn(n, pop_size, pixels, channels, generator=gen, dtype=torch.float64)) / 255
        return torch.cat([rows.round(), cols.round(), vals.clamp(0, 1) * value_scale], -1)

    if keys is None:
        pop = draw(torch.Generator().manual_seed(seed), batch)
    else:
        from .._rng import keyed_generator

        pop = torch.cat([draw(keyed_generator(seed, int(k)), 1) for k in torch.as_tensor(keys).tolist()]) \
            if batch else draw(torch.Generator().manual_seed(seed), 0)
    pop = pop.reshape(batch, pop_size, pixels * S)
    lo = torch.zeros(pixels, S, dtype=torch.float64)
    hi = torch.full((pixels, S), float(value_scale), dtype=torch.float64)
    hi[:, 0], hi[:, 1] = height - 1, width - 1
    mask = torch.zeros(pixels, S, dtype=torch.bool)
    mask[:, :2] = True
    D = pixels * S
    expand = lambda t: t.reshape(1, D).expand(batch, D).contiguous()
    return (pop.to(dtype).to(device), expand(lo).to(dtype).to(device), expand(hi).to(dtype).to(device),
            expand(mask).to(device))
