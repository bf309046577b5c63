"""The one-pixel attack (Su, Vargas and Sakurai 2019; paper 003): differential evolution over
d pixels per image, each a (row, column, value per channel) candidate, with no gradient.

Every image of the batch has its own population, evolved in step (``pyadv.optim.DE``: rand/1,
F = 0.5, no crossover); all candidates of a generation are rendered by one kernel
(``ops.pixel_replace``) into the runner's reused buffer and classified in forwards of the
measured size; an image leaves the batch when it stops. Values live on the paper's 0-255 scale
(whole grey levels with ``quantize=True``, so that rounding cannot undo a success).

A trial equal to a member of its population (a converged population without crossover keeps
proposing its own members) takes that member's fitness and costs no query (DE's
``reuse_known``; ``extras["reused"]`` counts them): the same search, a quarter fewer forwards
on the 8x8 digits.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
import torch

from .. import ops
from ..optim import DE
from ..optim.de import one_pixel_population
from ._base import (Attack, CommonOptions, RawResult, int_option, number_option, option_error,
                    pixel_budget_option, register)

STOPS = ("paper", "first_success", "none")


@dataclass(frozen=True)
class OnePixelOptions(CommonOptions):
    """pixels: d, the pixels changed per image; pop_size 400, iters 100, F 0.5 (Su et al.);
    stop: "paper" (an image stops when the true class's probability falls below
    ``true_prob`` (5 %), or, targeted, the target's rises above ``target_prob`` (90 %)),
    "first_success" (as soon as one candidate is adversarial) or "none" (every generation).
    The fitness is the true class's probability (untargeted) or minus the target's."""
    pixels: int = 1
    pop_size: int = 400
    iters: int = 100
    F: float = 0.5
    stop: str = "paper"
    true_prob: float = 0.05
    target_prob: float = 0.9

    def __post_init__(self):
        super().__post_init__()
        int_option("pixels", self.pixels, 1)
        int_option("pop_size", self.pop_size, 4)
        int_option("iters", self.iters, 0)
        number_option("F", self.F, positive=True)
        if self.stop not in STOPS:
            raise option_error("stop", self.stop, f"one of {STOPS}")
        for name in ("true_prob", "target_prob"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                raise option_error(name, v, "a probability in (0, 1)")


@register("onepixel")
class OnePixel(Attack):
    """Su et al.'s one-pixel attack, batched. ``result.extras``: ``pixels`` [B, d, 2] (row,
    column of each changed pixel), ``values`` [B, d, C] (its new value in [0, 1]),
    ``fitness`` [B] (the best candidate's fitness)."""

    Options = OnePixelOptions

    def _check_call(self, x, y, target):
        if x.dim() != 4:
            raise ValueError(f"x must be [B, C, H, W] images, got shape {tuple(x.shape)}")
        pixel_budget_option("pixels", self.options.pixels, x)

    def _run(self, x, y, target, runner, index) -> RawResult:
        o = self.options
        B, C, H, W = x.shape
        dev = x.device
        S = 2 + C
        d = o.pixels
        init, lo, hi, mask = one_pixel_population(B, o.pop_size, H, W, C, pixels=d, seed=o.seed, dtype=x.dtype,
                                                  device=dev, keys=index.cpu(), value_scale=255.0)
        if o.quantize:  # whole grey levels for the values too
            mask = torch.ones_like(mask)
        scale = torch.ones(d, S, dtype=x.dtype, device=dev)
        scale[:, 2:] = 1 / 255
        scale = scale.flatten()
        targeted = target is not None
        found = torch.zeros(B, dtype=torch.bool, device=dev)
        found_pos = torch.zeros(B, d * S, dtype=x.dtype, device=dev)

        def objective(pos, ids, need=None):
            # need: the trials DE has no fitness for (the others repeat a member, evaluated before)
            z = runner.probs_pixels(x[ids], pos * scale, ids, logits=True, need=need)   # [b, N, K]
            cls = (target if targeted else y)[ids]
            # the one probability the search needs, P(cls) = exp(z_cls - logsumexp z), without
            # the full softmax
            pc = (z.gather(2, cls[:, None, None].expand(-1, z.shape[1], 1))[..., 0] - z.logsumexp(-1)).exp()
            if targeted:
                fit, ok = -pc, runner.hit(z, None, cls[:, None])
                stop_paper = (pc if need is None else pc.masked_fill(~need, -math.inf)).amax(1) > o.target_prob
            else:
                fit, ok = pc, runner.hit(z, cls[:, None], None)
                stop_paper = (pc if need is None else pc.masked_fill(~need, math.inf)).amin(1) < o.true_prob
            if need is not None:
                ok &= need
            # The first adversarial candidate an image finds is kept: the lowest-fitness one
            # need not be adversarial (its probability mass can sit on y all the same).
            hit = ok.any(1)
            new = hit & ~found[ids]
            if bool(new.any()):
                first = ok.float().argmax(1)
                rows = ids[new]
                found_pos[rows] = pos[new, first[new]]
                found[rows] = True
            if o.stop == "paper":
                done = stop_paper
            elif o.stop == "first_success":
                done = hit
            else:
                done = torch.zeros_like(hit)
            return fit, done

        de = DE(objective, lo, hi, pop_size=o.pop_size, F=o.F, CR=1.0, strategy="rand1", integer_mask=mask,
                seed=o.seed, init_pop=init, dtype=x.dtype, device=dev, keys=index, reuse_known=True)
        for _ in range(o.iters):
            if len(de.active) == 0:
                break
            de.step()
        res = de.tracker.result()
        # The best-fitness candidate, unless it is not adversarial and an earlier one was.
        best = res.best_pos.to(x.dtype).clone()
        rows = found.nonzero().flatten()
        if len(rows):
            z = runner.probs_pixels(x[rows], (best[rows] * scale)[:, None].contiguous(), rows, logits=True)[:, 0]
            ok = runner.hit(z, y[rows], target[rows] if targeted else None)
            best[rows[~ok]] = found_pos[rows[~ok]]
        cand = (best * scale).view(B, d, S)
        adv = ops.pixel_replace(x.contiguous(), cand[:, None].contiguous())
        return RawResult(adv=adv.view_as(x), iterations=res.iterations, search_success=found,
                         extras={"pixels": cand[..., :2].round().long(), "values": cand[..., 2:],
                                 "reused": de.tracker.reused,
                                 "fitness": res.best_fit.to(torch.float32)})


__all__ = ["OnePixel", "OnePixelOptions"]
