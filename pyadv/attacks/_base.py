"""The attack base: validated options, one call ``attack(x, y, target=None)``, the registry.

An attack declares its options once, as a frozen dataclass (``Options``) that validates
itself; the CLI, the dataset pipeline and a result's provenance all read that one place.
The base does what every attack must: check the inputs, put the model in eval mode with
frozen parameters (and give it back as it was), hand the attack a model runner, round to
k/255 when asked, check success on the returned images in the model's own precision, and
build the AttackResult. An attack implements ``_run`` and ``_success`` only.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
from torch import nn

from .._model_mode import frozen_eval
from .._rng import keyed_generator
from ..fi._inputs import as_labels, check_images, check_logits, check_target
from ._runner import EVAL_DTYPES, ModelRunner
from .result import AttackResult, norms_of

_REGISTRY: dict[str, type["Attack"]] = {}


def register(name: str):
    """Class decorator: makes an attack available as ``pyadv.attacks.create(name, ...)``."""
    def deco(cls):
        if name in _REGISTRY:
            raise ValueError(f"attack name {name!r} is registered twice")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return deco


def available() -> list[str]:
    """Registry names of every attack."""
    return sorted(_REGISTRY)


def attack_class(name: str) -> type["Attack"]:
    """The attack class registered as ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown attack {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name]


def create(name: str, model: nn.Module, **options) -> "Attack":
    """Builds the attack registered as ``name`` with its options."""
    return attack_class(name)(model, **options)


def option_error(name: str, value, allowed: str) -> ValueError:
    return ValueError(f"option {name}={value!r} is not allowed: {allowed}")


def int_option(name: str, value, lo: int) -> None:
    """An int >= lo (bools are not ints here)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise option_error(name, value, f"an int >= {lo}")


def number_option(name: str, value, *, positive: bool = False) -> None:
    """A finite number >= 0, or > 0 with ``positive``."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and \
        (value > 0 if positive else value >= 0)
    if not ok:
        raise option_error(name, value, f"a finite number {'>' if positive else '>='} 0")


def pixel_budget_option(name: str, value: int, x: torch.Tensor) -> None:
    """A number of pixels (all channels of a pixel as one) no larger than the images of x have."""
    H, W = x.shape[-2:]
    if value > H * W:
        raise option_error(name, value, f"at most the image's {H} x {W} = {H * W} pixels")


def bool_option(name: str, value) -> None:
    if not isinstance(value, bool):
        raise option_error(name, value, "True or False")


@dataclass(frozen=True)
class CommonOptions:
    """Options every attack has.

    seed: randomness (Philox keyed by seed and each image's index);
    quantize: work on 8-bit images: the clean images are rounded to k/255 first (a no-op for
        8-bit data), the returned ones too, and success is re-checked on the rounded images;
    progress: a tqdm bar on long attacks;
    memory_budget: bytes a forward chunk may use (default 2 GiB);
    chunk_size: images per forward (None: measured once per model and shape);
    eval_dtype: None or "bfloat16"/"float16": the search's fitness evaluations under autocast,
        every reported number checked in the model's own precision;
    search_copy: None (measured: the faster of the model as given and its search copy, see
        the runner), True (the copy wherever it is valid) or False (never). The measurement is
        timing, so it may choose differently in another process; a job that must give the
        same bytes in every process (``pyadv generate``) fixes it, and the chunk size.
    """
    seed: int = 0
    quantize: bool = False
    progress: bool = False
    memory_budget: Optional[int] = None
    chunk_size: Optional[int] = None
    eval_dtype: Optional[str] = None
    search_copy: Optional[bool] = None

    def __post_init__(self):
        int_option("seed", self.seed, 0)
        bool_option("quantize", self.quantize)
        bool_option("progress", self.progress)
        if self.memory_budget is not None:
            int_option("memory_budget", self.memory_budget, 1)
        if self.chunk_size is not None:
            int_option("chunk_size", self.chunk_size, 1)
        if self.search_copy is not None:
            bool_option("search_copy", self.search_copy)
        if isinstance(self.eval_dtype, torch.dtype):
            object.__setattr__(self, "eval_dtype", str(self.eval_dtype).replace("torch.", ""))
        if self.eval_dtype not in EVAL_DTYPES:
            raise option_error("eval_dtype", self.eval_dtype, "None, 'float32', 'bfloat16' or 'float16'")

    def as_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            # as JSON will hold them: a saved and loaded result has the same options
            out[f.name] = v.tolist() if isinstance(v, torch.Tensor) else list(v) if isinstance(v, tuple) else v
        return out


@dataclass
class RawResult:
    """What an attack's ``_run`` hands back: the images it settled on and its counters."""
    adv: torch.Tensor
    iterations: torch.Tensor
    search_success: Optional[torch.Tensor] = None  # success as the search saw it (eval_dtype)
    extras: dict = dataclasses.field(default_factory=dict)


class Attack:
    """Base of every attack: ``attack = Attack(model, **options)``; ``attack(x, y, target)``.

    Subclasses set ``Options`` (a frozen dataclass deriving from CommonOptions), implement
    ``_run(x, y, target, runner) -> RawResult`` and ``_success(probs, y, target) -> [B] bool``.
    ``target`` is an argument of the call, never a mode.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = CommonOptions

    def __init__(self, model: nn.Module, **options):
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model = model
        self.options = self.validated_options(**options)

    @classmethod
    def validated_options(cls, **options):
        """The attack's Options for these keyword options, or a ValueError naming what is wrong
        (an unknown name with the allowed ones; a value with what is allowed)."""
        allowed = {f.name for f in dataclasses.fields(cls.Options)}
        unknown = sorted(set(options) - allowed)
        if unknown:
            raise ValueError(f"unknown option(s) {', '.join(unknown)} for {cls.__name__}; "
                             f"allowed: {', '.join(sorted(allowed))}")
        return cls.Options(**options)

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls.Options)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options})"

    # --- the call --------------------------------------------------------------------------

    def __call__(self, x: torch.Tensor, y, target=None, *, index: Optional[torch.Tensor] = None) -> AttackResult:
        """Attacks the batch x [B, C, H, W] (in [0, 1]) with true labels y [B].

        target: None (untargeted), a class, or [B] classes (each differing from its label).
        index: the images' global indices [B] (default 0..B-1); every random number of an
            image is keyed by it, so batch size, sharding and resume do not change a result.
        """
        t0 = time.perf_counter()
        check_images(x)
        if self.options.quantize:
            # The attack works on 8-bit images: the clean ones too (a no-op for 8-bit data such as
            # MNIST or CIFAR-10), else every pixel the rounding moves would count as perturbed.
            x = quantize(x.detach().clone())
        B = len(x)
        device = x.device
        params = list(self.model.parameters())
        if params and params[0].device != device:
            raise ValueError(f"x is on {device} but the model is on {params[0].device}; move one of them")
        index = torch.arange(B, device=device) if index is None else torch.as_tensor(index, device=device).long()
        if index.shape != (B,):
            raise ValueError(f"index must hold one global index per image, shape [{B}], got {tuple(index.shape)}")
        with frozen_eval(self.model):
            K = self._num_classes(x)
            y = as_labels(y, B, K, "y", device)
            if target is not None:
                target = as_labels(target, B, K, "target", device)
                check_target(target, y)
            self._check_call(x, y, target)
            runner = ModelRunner(self.model, x[:1] if B else x.new_zeros(1, *x.shape[1:]), B, num_classes=K,
                                 memory_budget=self.options.memory_budget, chunk_size=self.options.chunk_size,
                                 eval_dtype=self.options.eval_dtype, search_copy=self.options.search_copy)
            raw = self._run(x.detach(), y, target, runner, index) if B else \
                RawResult(x.clone(), torch.zeros(0, dtype=torch.long, device=device))
            adv = raw.adv.detach().clamp(0, 1).to(x.dtype)
            if self.options.quantize:
                adv = quantize(adv)
            owners = torch.arange(B, device=device)
            probs = runner.probs(adv, owners, exact=True) if B else x.new_zeros(0, K, dtype=torch.float32)
            success = self._success(probs, y, target) if B else torch.zeros(0, dtype=torch.bool, device=device)
        return self._result(x, adv, y, target, probs, success, runner, raw, time.perf_counter() - t0)

    def _num_classes(self, x: torch.Tensor) -> int:
        probe = x[:1] if len(x) else x.new_zeros(1, *x.shape[1:])
        with torch.inference_mode():
            logits = self.model(probe)
        check_logits(logits, 1)
        return logits.shape[1]

    def _check_call(self, x: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor]) -> None:
        """Per-call checks an attack adds (say, explicit pixel indices against the image size)."""

    def _result(self, x, adv, y, target, probs, success, runner, raw: RawResult, elapsed: float) -> AttackResult:
        import pyadv

        B = len(x)
        tgt = target if target is not None else torch.full((B,), -1, dtype=torch.long, device=x.device)
        prob_true = probs.gather(1, y[:, None])[:, 0] if B else probs.new_zeros(0)
        prob_target = probs.gather(1, tgt.clamp_min(0)[:, None])[:, 0].masked_fill(tgt < 0, float("nan")) \
            if B else probs.new_zeros(0)
        precision = {"eval_dtype": self.options.eval_dtype or str(x.dtype).replace("torch.", "")}
        if raw.search_success is not None:
            search = raw.search_success.bool()
            precision["search_successes"] = int(search.sum())
            precision["failed_check"] = int((search & ~success).sum())
            precision["found_by_check"] = int((~search & success).sum())
        extras = dict(raw.extras)
        if raw.search_success is not None:
            extras["search_success"] = raw.search_success.bool()
        return AttackResult(
            x=x, adv=adv, y=y, target=tgt, success=success, pred=probs.argmax(1) if B else y.clone(), probs=probs,
            prob_true=prob_true, prob_target=prob_target, queries=runner.queries, gradients=runner.gradients,
            iterations=raw.iterations.to(device=x.device, dtype=torch.long), **norms_of(adv, x),
            attack=self.name, options=self.options.as_dict(), seed=self.options.seed,
            versions={"pyadv": pyadv.__version__, "torch": torch.__version__}, time_s=elapsed,
            precision=precision, profile={"model_s": runner.forward_s, "total_s": elapsed}, extras=extras)

    # --- what an attack implements --------------------------------------------------------

    def _run(self, x, y, target, runner: ModelRunner, index: torch.Tensor) -> RawResult:  # pragma: no cover
        raise NotImplementedError

    def _success(self, probs: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor]) -> torch.Tensor:
        """Default criterion: misclassified (untargeted) or classified as the target."""
        pred = probs.argmax(1)
        return pred == target if target is not None else pred != y


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Rounds images in [0, 1] to the nearest k/255 (what an 8-bit PNG stores)."""
    return (x * 255).round_().div_(255).clamp_(0, 1)


__all__ = ["Attack", "CommonOptions", "RawResult", "register", "available", "create", "attack_class", "quantize",
           "option_error", "int_option", "number_option", "bool_option", "pixel_budget_option", "keyed_generator"]
