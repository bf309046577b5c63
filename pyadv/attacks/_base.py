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
from ._compile import compile_available
from ._precision import precision_name
from ._runner import ModelRunner
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
    precision: the search's precision: "fp32" (the model's own), "bf16" or "fp16" (autocast
        for every forward, gradient and vector-Jacobian product of the search) or "auto" (the
        fastest the device runs natively, measured once per model and shape with the chunk
        size; float32 for calls too small to measure). Every number a result reports is
        checked in the model's own precision; in a reduced precision the search claims a
        success only by more than the runner's measured ``band`` of logit error, and an image
        whose claimed success the check still refutes is attacked again from the start in
        float32 (its queries added; counted in ``result.precision["fallback"]``). FI scores
        (FIPSO's pixel choice) stay in the model's precision: their K - 1 trick and rank
        cut-off need it;
    compile: False, True (torch.compile the model when the call's expected eager model time
        is at least ``_compile.COMPILE_PAYS_AFTER_S``, or the model is compiled already in this
        process) or "always"; the compiled model gets fixed-size chunks (no recompiles as the
        active set shrinks); compilations and their time are in ``result.profile``;
    compile_backend: torch.compile's backend ("inductor"; "aot_eager" traces without code
        generation);
    search_copy: None (measured: the faster of the model as given and its search copy, see
        the runner), True (the copy wherever it is valid) or False (never). The measurement is
        timing, so it may choose differently in another process; a job that must give the
        same bytes in every process (``pyadv generate``) fixes it, and the chunk size;
    incremental: None (sparse candidates of a conv-pool chain evaluated incrementally, in the
        model's dtype, where the estimate says it pays on the CPU), True (wherever the model
        qualifies) or False (never); see ``pyadv.attacks._incremental``.
    """
    seed: int = 0
    quantize: bool = False
    progress: bool = False
    memory_budget: Optional[int] = None
    chunk_size: Optional[int] = None
    precision: str = "fp32"
    search_copy: Optional[bool] = None
    compile: Any = False
    compile_backend: str = "inductor"
    incremental: Optional[bool] = None

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
        if self.incremental is not None:
            bool_option("incremental", self.incremental)
        object.__setattr__(self, "precision", precision_name(self.precision))
        if not (isinstance(self.compile, bool) or self.compile == "always"):
            raise option_error("compile", self.compile, "False, True or 'always'")
        if self.compile:
            why = compile_available()
            if why is not None:
                raise option_error("compile", self.compile, f"False here: {why}")
            from torch import _dynamo

            backends = _dynamo.list_backends(exclude_tags=())
            if self.compile_backend not in backends:
                raise option_error("compile_backend", self.compile_backend, f"one of {', '.join(backends)}")

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
    search_success: Optional[torch.Tensor] = None  # success as the search claimed it (its precision)
    extras: dict = dataclasses.field(default_factory=dict)


class Attack:
    """Base of every attack: ``attack = Attack(model, **options)``; ``attack(x, y, target)``.

    Subclasses set ``Options`` (a frozen dataclass deriving from CommonOptions), implement
    ``_run(x, y, target, runner) -> RawResult`` and ``_success(probs, y, target) -> [B] bool``.
    ``target`` is an argument of the call, never a mode.
    """

    name: ClassVar[str] = ""
    Options: ClassVar[type] = CommonOptions
    #: whether ``precision="auto"`` may pick a reduced precision for this attack's search; False
    #: where one measured harmful (an attack says why), so that "auto" keeps float32 there
    auto_reduced: ClassVar[bool] = True

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
            x = quantize(x.detach())  # a new tensor: the caller's is left as it is
        B = len(x)
        device = x.device
        params = list(self.model.parameters())
        if params and params[0].device != device:
            raise ValueError(f"x is on {device} but the model is on {params[0].device}; move one of them")
        index = torch.arange(B, device=device) if index is None else torch.as_tensor(index, device=device).long()
        if index.shape != (B,):
            raise ValueError(f"index must hold one global index per image, shape [{B}], got {tuple(index.shape)}")
        with frozen_eval(self.model):
            t_probe = time.perf_counter()
            probe = self._probe_logits(x)  # K, and the model's logits the runner's copy check compares with
            t_probe = time.perf_counter() - t_probe
            K = probe.shape[1]
            y = as_labels(y, B, K, "y", device)
            if target is not None:
                target = as_labels(target, B, K, "target", device)
                check_target(target, y)
            self._check_call(x, y, target)
            runner = self._runner(x, B, K, sample_logits=probe if B else None)
            runner.forward_s += t_probe  # a forward pass of the model, for this call
            raw = self._run(x.detach(), y, target, runner, index) if B else \
                RawResult(x.clone(), torch.zeros(0, dtype=torch.long, device=device))
            adv, probs, success = self._checked(raw.adv, x, y, target, runner)
            precision = self._precision_record(x, runner, raw, success)
            if B and raw.search_success is not None and runner.search_precision != "fp32":
                refuted = (raw.search_success.bool() & ~success).nonzero().flatten()
                if len(refuted):
                    precision.update(self._fall_back(refuted, x, y, target, index, K, runner, raw, adv, probs,
                                                     success))
        return self._result(x, adv, y, target, probs, success, runner, raw, time.perf_counter() - t0, precision)

    def _precision_record(self, x, runner: ModelRunner, raw: RawResult, success) -> dict:
        """What ``result.precision`` holds: the precision asked for and the one the search ran
        in, the model's, the band; with the search's own claims, how many of them the check
        refuted (``failed_check``: before any fallback) and how many successes only the check
        found; ``fallback`` / ``fallback_success``: images attacked again in float32."""
        live = len(x) > 0
        out = {"asked": self.options.precision, "search": runner.search_precision if live else "fp32",
               "model": str(x.dtype).replace("torch.", ""), "band": runner.measured_band,
               "fallback": 0, "fallback_success": 0}
        if raw.search_success is not None:
            search = raw.search_success.bool()
            out["search_successes"] = int(search.sum())
            out["failed_check"] = int((search & ~success).sum())
            out["found_by_check"] = int((~search & success).sum())
        return out

    def _runner(self, x: torch.Tensor, B: int, K: int, precision: Optional[str] = None,
                sample_logits: Optional[torch.Tensor] = None) -> ModelRunner:
        o = self.options
        if precision is None:
            precision = "fp32" if o.precision == "auto" and not self.auto_reduced else o.precision
        return ModelRunner(self.model, x if B else x.new_zeros(1, *x.shape[1:]), B, num_classes=K,
                           memory_budget=o.memory_budget, chunk_size=o.chunk_size,
                           precision=precision, search_copy=o.search_copy, compile=o.compile,
                           compile_backend=o.compile_backend, incremental=o.incremental,
                           sample_logits=sample_logits)

    def _checked(self, raw_adv, x, y, target, runner: ModelRunner):
        """(adv, probs, success) of the images an attack settled on: clamped, rounded to k/255
        with ``quantize``, and judged with the model as given, in its own precision."""
        B = len(x)
        adv = raw_adv.detach().clamp(0, 1).to(x.dtype)
        if self.options.quantize:
            adv = _quantize_(adv)  # adv is the clamp's new tensor
        if not B:
            return adv, x.new_zeros(0, runner.num_classes, dtype=torch.float32), \
                torch.zeros(0, dtype=torch.bool, device=x.device)
        probs = runner.probs(adv, torch.arange(B, device=x.device), exact=True)
        return adv, probs, self._success(probs, y, target)

    def _fall_back(self, rows, x, y, target, index, K, runner, raw, adv, probs, success) -> dict:
        """The images whose reduced-precision success the check refuted, attacked again from the
        start in float32 (their randomness keyed by their index, so each gets what a float32
        call would have given it). Their queries and model time add to the call's; adv, probs,
        success, iterations and per-image extras are replaced in place."""
        sub_t = None if target is None else target[rows]
        sub_runner = self._runner(x[rows], len(rows), K, precision="fp32")
        sub = self._run(x[rows], y[rows], sub_t, sub_runner, index[rows])
        a, p, ok = self._checked(sub.adv, x[rows], y[rows], sub_t, sub_runner)
        adv[rows], probs[rows], success[rows] = a, p, ok
        runner.queries[rows] += sub_runner.queries
        runner.gradients[rows] += sub_runner.gradients
        runner.forward_s += sub_runner.forward_s
        raw.iterations = raw.iterations.clone()
        raw.iterations[rows] += sub.iterations.to(raw.iterations)
        B = len(x)
        for name, v in sub.extras.items():
            mine = raw.extras.get(name)
            if isinstance(v, torch.Tensor) and isinstance(mine, torch.Tensor) and mine.shape[:1] == (B,) \
                    and v.shape[1:] == mine.shape[1:] and len(v) == len(rows):
                mine[rows] = v.to(mine)
        return {"fallback": len(rows), "fallback_success": int(ok.sum())}

    def _probe_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The model's logits [1, K] of the batch's first image (of a blank one for an empty batch),
        checked: they give K."""
        probe = x[:1] if len(x) else x.new_zeros(1, *x.shape[1:])
        with torch.inference_mode():
            logits = self.model(probe)
        check_logits(logits, 1)
        return logits

    def _check_call(self, x: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor]) -> None:
        """Per-call checks an attack adds (say, explicit pixel indices against the image size)."""

    def _result(self, x, adv, y, target, probs, success, runner, raw: RawResult, elapsed: float,
                precision: dict) -> AttackResult:
        import pyadv

        B = len(x)
        tgt = target if target is not None else torch.full((B,), -1, dtype=torch.long, device=x.device)
        prob_true = probs.gather(1, y[:, None])[:, 0] if B else probs.new_zeros(0)
        prob_target = probs.gather(1, tgt.clamp_min(0)[:, None])[:, 0].masked_fill(tgt < 0, float("nan")) \
            if B else probs.new_zeros(0)
        profile = {"model_s": runner.forward_s, "total_s": elapsed, "incremental": runner.incremental_used,
                   **runner.compile_stats}
        extras = dict(raw.extras)
        if raw.search_success is not None:
            extras["search_success"] = raw.search_success.bool()
        return AttackResult(
            x=x, adv=adv, y=y, target=tgt, success=success, pred=probs.argmax(1) if B else y.clone(), probs=probs,
            prob_true=prob_true, prob_target=prob_target, queries=runner.queries, gradients=runner.gradients,
            iterations=raw.iterations.to(device=x.device, dtype=torch.long), **norms_of(adv, x),
            attack=self.name, options=self.options.as_dict(), seed=self.options.seed,
            versions={"pyadv": pyadv.__version__, "torch": torch.__version__}, time_s=elapsed,
            precision=precision, profile=profile, extras=extras)

    # --- what an attack implements --------------------------------------------------------

    def _run(self, x, y, target, runner: ModelRunner, index: torch.Tensor) -> RawResult:  # pragma: no cover
        raise NotImplementedError

    def _success(self, probs: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor]) -> torch.Tensor:
        """Default criterion: misclassified (untargeted) or classified as the target."""
        pred = probs.argmax(1)
        return pred == target if target is not None else pred != y


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Rounds images in [0, 1] to the nearest k/255 (what an 8-bit PNG stores)."""
    return _to_levels_(x * 255)


def _quantize_(x: torch.Tensor) -> torch.Tensor:
    """quantize in place: for a tensor the caller has just made (one fresh buffer less)."""
    return _to_levels_(x.mul_(255))


def _to_levels_(scaled: torch.Tensor) -> torch.Tensor:
    """Images times 255, rounded to whole grey levels and back to [0, 1], in place."""
    return scaled.round_().div_(255).clamp_(0, 1)


__all__ = ["Attack", "CommonOptions", "RawResult", "register", "available", "create", "attack_class", "quantize",
           "option_error", "int_option", "number_option", "bool_option", "pixel_budget_option", "keyed_generator"]
