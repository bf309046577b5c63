"""Many box-constrained minimisations at once: L-BFGS-B (Byrd, Lu, Nocedal and Zhu 1995, version
3.0 of Morales and Nocedal 2011) compiled, with reverse communication.

Each problem asks for f and its gradient at one point at a time; the caller answers every
waiting problem with one batched evaluation (one forward and backward pass of a model, say)
and :meth:`LBFGSB.step` advances them all, in parallel over the CPU's threads. The iterates are
those of ``scipy.optimize.minimize(method="L-BFGS-B")`` with the same options, to rounding (the
same algorithm, step for step, its sums in another order; tests compare them), without scipy's
per-problem Python loop.

    opt = LBFGSB(batch=B, n=n, lower=0.0, upper=1.0)
    opt.start(torch.arange(B), x0)
    while len(rows := opt.waiting()):
        f, g = objective(opt.x[rows])
        opt.step(rows, f, g)

or, for an objective of whole batches, :func:`minimize`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .. import _C

#: Status of a problem (``LBFGSB.status``).
IDLE, EVALUATE, CONVERGED_PGTOL, CONVERGED_FTOL, MAX_ITER, MAX_EVAL, ABNORMAL = -1, 0, 1, 2, 3, 4, 5
STATUS_NAMES = {IDLE: "idle", EVALUATE: "evaluate", CONVERGED_PGTOL: "projected gradient <= pgtol",
                CONVERGED_FTOL: "relative reduction of f <= factr * eps", MAX_ITER: "iteration limit",
                MAX_EVAL: "evaluation limit", ABNORMAL: "line search failed"}
_STATUS, _ITERATIONS, _EVALUATIONS, _AT_EVALUATED = 0, 1, 2, 3  # the public columns of iws

# scipy.optimize.minimize(method="L-BFGS-B")'s defaults
DEFAULTS = {"m": 10, "factr": 1e7, "pgtol": 1e-5, "max_iter": 15000, "max_eval": 15000, "max_ls": 20}


def _positive_int(name, value, low=1):
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def _bound(name, value, batch, n):
    t = torch.as_tensor(value, dtype=torch.float64)
    try:
        t = t.expand(batch, n)
    except RuntimeError:
        raise ValueError(f"{name} must be a number or broadcast to [batch, n] = [{batch}, {n}], "
                         f"got shape {tuple(t.shape)}") from None
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite (every variable is boxed)")
    return t.contiguous().clone()


class LBFGSB:
    """``batch`` independent problems of ``n`` variables on the box [lower, upper] (numbers or
    tensors broadcast to [batch, n], finite, lower <= upper). Options as scipy's L-BFGS-B:
    ``m`` corrections kept, ``factr`` and ``pgtol`` (its ftol is factr * eps), ``max_iter``,
    ``max_eval`` (scipy's maxfun) and ``max_ls`` line-search steps.

    State, all [batch]-shaped and updated in place: ``x`` [batch, n] (float64; the point a
    waiting problem wants evaluated, or a finished problem's answer), ``status`` (``EVALUATE``
    while it runs; see ``STATUS_NAMES``), ``iterations``, ``evaluations``, ``at_evaluated`` (the
    final x is the last point evaluated: the caller may keep what it computed there)."""

    def __init__(self, batch: int, n: int, lower=0.0, upper=1.0, *, m: int = 10, factr: float = 1e7,
                 pgtol: float = 1e-5, max_iter: int = 15000, max_eval: int = 15000, max_ls: int = 20):
        _positive_int("batch", batch, 0)
        _positive_int("n", n)
        self.m = _positive_int("m", m)
        self.max_iter, self.max_eval = _positive_int("max_iter", max_iter), _positive_int("max_eval", max_eval)
        self.max_ls = _positive_int("max_ls", max_ls)
        for name, v in (("factr", factr), ("pgtol", pgtol)):
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not v >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {v!r}")
        self.factr, self.pgtol = float(factr), float(pgtol)
        self.lower, self.upper = _bound("lower", lower, batch, n), _bound("upper", upper, batch, n)
        if (self.lower > self.upper).any():
            raise ValueError("lower must be <= upper for every variable")
        nd, ni = _C.lbfgsb_workspace(n, self.m)
        self.x = torch.zeros(batch, n, dtype=torch.float64)
        self._ws = torch.zeros(batch, nd, dtype=torch.float64)
        self._iws = torch.zeros(batch, ni, dtype=torch.int32)
        self._iws[:, _STATUS] = IDLE
        self.batch, self.n = batch, n

    @staticmethod
    def state_bytes(n: int, m: int = 10) -> int:
        """Bytes of state one problem of n variables with m corrections keeps (its point,
        bounds and workspace): about 8 (2m + 10) n."""
        nd, ni = _C.lbfgsb_workspace(n, m)
        return 8 * (nd + 3 * n) + 4 * ni

    status = property(lambda self: self._iws[:, _STATUS])
    iterations = property(lambda self: self._iws[:, _ITERATIONS])
    evaluations = property(lambda self: self._iws[:, _EVALUATIONS])
    at_evaluated = property(lambda self: self._iws[:, _AT_EVALUATED].bool())

    def _rows(self, rows) -> torch.Tensor:
        return torch.as_tensor(rows, dtype=torch.long).reshape(-1)

    def start(self, rows, x0: torch.Tensor) -> None:
        """(Re)starts problems ``rows`` from x0 [len(rows), n] (projected onto the box, the
        memory emptied); each then waits for f and g at its x."""
        rows = self._rows(rows)
        x0 = torch.as_tensor(x0).detach().to(device="cpu", dtype=torch.float64).reshape(len(rows), self.n)
        torch.ops.pyadv.lbfgsb_start(self.x, self._ws, self._iws, self.lower, self.upper, rows, x0, self.m)

    def waiting(self) -> torch.Tensor:
        """The rows that wait for an evaluation at their x, in increasing order."""
        return torch.nonzero(self.status == EVALUATE).flatten()

    def step(self, rows, f: torch.Tensor, g: torch.Tensor) -> None:
        """Answers problems ``rows`` (each waiting) with f [len(rows)] and g [len(rows), n] at
        their x; each runs on to its next point (status ``EVALUATE``) or its end."""
        rows = self._rows(rows)
        f = torch.as_tensor(f).detach().to(device="cpu", dtype=torch.float64).reshape(len(rows))
        g = torch.as_tensor(g).detach().to(device="cpu", dtype=torch.float64).reshape(len(rows), self.n)
        torch.ops.pyadv.lbfgsb_step(self.x, self._ws, self._iws, self.lower, self.upper, rows, f, g, self.m,
                                    self.max_iter, self.max_eval, self.max_ls, self.factr, self.pgtol)


@dataclass
class MinimizeResult:
    """x [B, n] the minimisers, fun [B] f there, status / iterations / evaluations [B]."""
    x: torch.Tensor
    fun: torch.Tensor
    status: torch.Tensor
    iterations: torch.Tensor
    evaluations: torch.Tensor


def minimize(fun: Callable[[torch.Tensor], tuple], x0: torch.Tensor, lower=0.0, upper=1.0, **options) -> MinimizeResult:
    """Minimises B problems from x0 [B, n] on the box, ``fun(x [R, n]) -> (f [R], g [R, n])``
    called once per round with every waiting problem's point (float64). Options as
    :class:`LBFGSB`."""
    x0 = torch.as_tensor(x0)
    if x0.dim() != 2:
        raise ValueError(f"x0 must be [B, n], got shape {tuple(x0.shape)}")
    opt = LBFGSB(x0.shape[0], x0.shape[1], lower, upper, **options)
    opt.start(torch.arange(x0.shape[0]), x0)
    fx = torch.full((x0.shape[0],), float("nan"), dtype=torch.float64)
    while len(rows := opt.waiting()):
        f, g = fun(opt.x[rows].clone())
        f = torch.as_tensor(f, dtype=torch.float64).reshape(-1)
        fx[rows] = f
        opt.step(rows, f, g)
    redo = torch.nonzero(~opt.at_evaluated).flatten()
    if len(redo):  # a failed line search went back to an earlier point
        fx[redo] = torch.as_tensor(fun(opt.x[redo].clone())[0], dtype=torch.float64).reshape(-1)
    return MinimizeResult(opt.x.clone(), fx, opt.status.clone(), opt.iterations.clone(), opt.evaluations.clone())
