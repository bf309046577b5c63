"""Batched particle swarm optimisation: one swarm per problem, many problems at once."""
from __future__ import annotations

from typing import Optional

import torch

from .. import ops
from ._swarm import BatchedOptimizer, Objective, Tracker, as_bounds, check_common, evaluate, uniform_in


class PSO(BatchedOptimizer):
    """Minimises B independent problems f(pos [B, N, D]) -> fitness [B, N] with one swarm each
    (paper 000, eq. (2)-(4); w = 0.6, c1 = c2 = 2 as the paper fixes them).

    The objective is called as ``objective(pos [b, N, D], ids [b])`` for the b problems still
    running (ids index the original batch) and returns fitness [b, N], or (fitness, done [b])
    to stop problems early: a finished problem is removed from the active set at once and costs
    no more evaluations. NaN fitness counts as +inf. Initial positions are uniform in the
    bounds (pyswarms' choice too), initial velocities zero; both can be given.

    State is inspectable between or after :meth:`run` calls: ``pos``, ``vel``, ``pbest``,
    ``pbest_fit``, ``gbest``, ``gbest_fit`` of the active problems, ``active`` (their ids),
    ``iteration``, and the full-batch ``tracker`` (evaluations, bests, history).

    A seed gives bit-identical results for any thread count and whatever the batch holds:
    every random number is Philox(seed, iteration, problem id, particle, dimension). The
    problem id is its batch position, or ``keys[b]`` when given (an attack passes each
    image's global index, so that sharding a data set does not change its swarms).
    """

    def __init__(self, objective: Objective, lo, hi, *, n_particles: int = 50, batch: Optional[int] = None,
                 w: float = 0.6, c1: float = 2.0, c2: float = 2.0, boundary: str = "clip", vmax_frac: float = 0.0,
                 seed: int = 0, init_pos: Optional[torch.Tensor] = None, init_vel: Optional[torch.Tensor] = None,
                 history: bool = False, dtype: Optional[torch.dtype] = None, device=None,
                 keys: Optional[torch.Tensor] = None):
        check_common(n_particles, 0, seed, 1, "n_particles")
        if boundary not in ops.BOUNDARIES:
            raise ValueError(f"boundary must be one of {sorted(ops.BOUNDARIES)}, got {boundary!r}")
        if not vmax_frac >= 0:
            raise ValueError(f"vmax_frac must be >= 0 (0: no clamp), got {vmax_frac!r}")
        dtype = dtype or (init_pos.dtype if init_pos is not None else torch.float32)
        self.lo, self.hi = as_bounds(lo, hi, batch, dtype, device)
        B, D = self.lo.shape
        self.objective, self.seed = objective, seed
        self.options = dict(w=w, c1=c1, c2=c2, boundary=boundary, vmax_frac=vmax_frac)
        self.tracker = Tracker(B, D, dtype, self.lo.device, history)
        gen = torch.Generator().manual_seed(seed)
        self.pos = self._given(init_pos, (B, n_particles, D), "init_pos") if init_pos is not None else \
            uniform_in(self.lo, self.hi, n_particles, gen)
        self.pos = torch.minimum(torch.maximum(self.pos, self.lo[:, None]), self.hi[:, None]).contiguous()
        self.vel = self._given(init_vel, (B, n_particles, D), "init_vel") if init_vel is not None else \
            torch.zeros_like(self.pos)
        self.active = torch.arange(B, device=self.lo.device)
        self.keys = None if keys is None else torch.as_tensor(keys, device=self.lo.device).long()
        if self.keys is not None and self.keys.shape != (B,):
            raise ValueError(f"keys must name each of the {B} problems once, shape [{B}], got {tuple(self.keys.shape)}")
        self.iteration = 0
        fit, done = evaluate(objective, self.pos, self.active)
        self.tracker.evaluations += n_particles
        self.pbest = self.pos.clone()
        self.pbest_fit = torch.full_like(fit, float("inf"))
        self.gbest = torch.zeros_like(self.lo)
        self.gbest_fit = torch.full((B,), float("inf"), dtype=dtype, device=self.lo.device)
        ops.swarm_best(self.pos, fit, self.pbest, self.pbest_fit, self.gbest, self.gbest_fit)
        self._finish(done)

    def _given(self, t, shape, name):
        t = torch.as_tensor(t, dtype=self.lo.dtype, device=self.lo.device)
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)}, got {tuple(t.shape)}")
        return t.clone().contiguous()

    _state = ("pos", "vel", "pbest", "pbest_fit", "gbest", "gbest_fit", "lo", "hi", "active")

    def _finish(self, done: torch.Tensor) -> None:
        self.tracker.record(self.active, self.gbest, self.gbest_fit, self.iteration)
        self._drop(done)

    def step(self) -> None:
        """One iteration for every active problem."""
        if len(self.active) == 0:
            return
        self.iteration += 1
        ops.pso_step(self.pos, self.vel, self.pbest, self.gbest, self.lo, self.hi, seed=self.seed,
                     step=self.iteration, ids=self.active if self.keys is None else self.keys[self.active], **self.options)
        fit, done = evaluate(self.objective, self.pos, self.active)
        self.tracker.evaluations[self.active] += self.pos.shape[1]
        ops.swarm_best(self.pos, fit, self.pbest, self.pbest_fit, self.gbest, self.gbest_fit)
        self._finish(done)
