"""What PSO and DE share: bounds, the objective call, per-problem early stop with compaction
of the active set, evaluation counts and convergence history."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union

import torch

Objective = Callable[[torch.Tensor, torch.Tensor], Union[torch.Tensor, tuple]]


@dataclass
class OptimResult:
    """best_pos [B, D], best_fit [B], evaluations [B] (objective calls per problem, one per
    candidate), iterations [B] (the iteration at which each problem stopped), done [B] (ended by
    the objective's done mask), history [T + 1, B] of the best fitness when recorded."""
    best_pos: torch.Tensor
    best_fit: torch.Tensor
    evaluations: torch.Tensor
    iterations: torch.Tensor
    done: torch.Tensor
    history: Optional[torch.Tensor] = None


def as_bounds(lo, hi, batch: Optional[int], dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Bounds as [B, D] tensors; [D] bounds are shared by all problems (then ``batch`` says B)."""
    lo = torch.as_tensor(lo, dtype=dtype, device=device)
    hi = torch.as_tensor(hi, dtype=dtype, device=device)
    if lo.dim() == 1:
        if batch is None:
            raise ValueError("with [D] bounds, give batch=B (the number of problems)")
        lo, hi = lo.expand(batch, -1), hi.expand(batch, -1)
    if lo.dim() != 2 or lo.shape != hi.shape:
        raise ValueError(f"lo and hi must both be [B, D] or [D], got {tuple(lo.shape)} and {tuple(hi.shape)}")
    if lo.shape[1] == 0:
        raise ValueError("the search space needs at least one dimension (D >= 1)")
    bad = ~(lo <= hi)
    if bool(bad.any()):
        b, d = (int(v) for v in bad.nonzero()[0])
        raise ValueError(f"bounds must satisfy lo <= hi; problem {b}, dimension {d} has lo = {float(lo[b, d])} "
                         f"> hi = {float(hi[b, d])}")
    return lo.contiguous(), hi.contiguous()


def evaluate(objective: Objective, cand: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Calls objective(cand [b, N, D], ids [b]) -> fitness [b, N] or (fitness, done [b]).
    NaN fitness is kept (the kernels treat it as +inf and never let it into a best)."""
    out = objective(cand, ids)
    done = None
    if isinstance(out, tuple):
        if len(out) != 2:
            raise ValueError("the objective must return fitness [b, N] or a pair (fitness [b, N], done [b])")
        out, done = out
    b, n = cand.shape[:2]
    if not isinstance(out, torch.Tensor) or out.shape != (b, n):
        raise ValueError(f"the objective must return fitness of shape [b, N] = [{b}, {n}] for candidates "
                         f"{tuple(cand.shape)}, got {getattr(out, 'shape', type(out))}")
    fit = out.to(cand.dtype).contiguous()
    if done is None:
        done = torch.zeros(b, dtype=torch.bool, device=cand.device)
    else:
        done = torch.as_tensor(done, device=cand.device)
        if done.shape != (b,) or done.dtype != torch.bool:
            raise ValueError(f"the objective's done mask must be a bool tensor of shape [{b}], got "
                             f"{tuple(done.shape)} {done.dtype}")
    return fit, done


@dataclass
class Tracker:
    """Full-size results and counters, filled as problems finish."""
    B: int
    D: int
    dtype: torch.dtype
    device: torch.device
    history: bool
    best_pos: torch.Tensor = field(init=False)
    best_fit: torch.Tensor = field(init=False)
    evaluations: torch.Tensor = field(init=False)
    reused: torch.Tensor = field(init=False)  # fitness taken from an identical member (DE's reuse_known)
    iterations: torch.Tensor = field(init=False)
    done: torch.Tensor = field(init=False)
    rows: list = field(default_factory=list)

    def __post_init__(self):
        self.best_pos = torch.zeros(self.B, self.D, dtype=self.dtype, device=self.device)
        self.best_fit = torch.full((self.B,), float("inf"), dtype=self.dtype, device=self.device)
        self.evaluations = torch.zeros(self.B, dtype=torch.long, device=self.device)
        self.reused = torch.zeros(self.B, dtype=torch.long, device=self.device)
        self.iterations = torch.zeros(self.B, dtype=torch.long, device=self.device)
        self.done = torch.zeros(self.B, dtype=torch.bool, device=self.device)

    def record(self, ids: torch.Tensor, best_pos: torch.Tensor, best_fit: torch.Tensor, iteration: int) -> None:
        self.best_pos[ids] = best_pos
        self.best_fit[ids] = best_fit
        self.iterations[ids] = iteration
        if self.history:
            self.rows.append(self.best_fit.clone())

    def result(self) -> OptimResult:
        hist = torch.stack(self.rows) if self.history and self.rows else None
        return OptimResult(self.best_pos, self.best_fit, self.evaluations, self.iterations, self.done, hist)


def check_common(n: int, iters: int, seed: int, n_min: int, what: str) -> None:
    if not isinstance(n, int) or n < n_min:
        raise ValueError(f"{what} must be an int >= {n_min}, got {n!r}")
    if not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters must be an int >= 0, got {iters!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")


class BatchedOptimizer:
    """What PSO and DE share: running iterations until every problem is done, and dropping
    finished problems from the per-problem state (the names in ``_state``, first dimension the
    active problems)."""

    _state: tuple[str, ...] = ()

    def step(self) -> None:  # pragma: no cover - each optimiser defines its iteration
        raise NotImplementedError

    def run(self, iters: int) -> OptimResult:
        """Runs up to ``iters`` more iterations (fewer when every problem is done)."""
        if not isinstance(iters, int) or iters < 0:
            raise ValueError(f"iters must be an int >= 0, got {iters!r}")
        for _ in range(iters):
            if len(self.active) == 0:
                break
            self.step()
        return self.tracker.result()

    def _drop(self, done: torch.Tensor) -> None:
        """Marks the problems flagged in ``done`` finished and removes them from the state."""
        if bool(done.any()):
            self.tracker.done[self.active[done]] = True
            keep = ~done
            for name in self._state:
                value = getattr(self, name)
                if value is not None:
                    setattr(self, name, value[keep].contiguous())


def uniform_in(lo: torch.Tensor, hi: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    """[B, n, D] uniform in the bounds, drawn on the CPU (the same on every device)."""
    u = torch.rand(lo.shape[0], n, lo.shape[1], generator=gen, dtype=torch.float64)
    lo64, hi64 = lo.detach().cpu().double(), hi.detach().cpu().double()
    return (lo64[:, None] + u * (hi64 - lo64)[:, None]).to(lo.dtype).to(lo.device)
