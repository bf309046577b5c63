"""The model runner: the one way every attack feeds the model.

Gradient-free attacks spend nearly all their time in the model's forward passes (a PSO
attack with 200 particles and 100 iterations: 99 % of its time), and a CPU model's
throughput varies about 3x with the number of images per forward. So the runner

- evaluates candidates in chunks whose size it measures once per (model, image shape, device,
  dtype, evaluation dtype) and caches for the process, capped by a memory budget;
- measures once whether a search copy of a conv net (batch norm folded into the
  convolutions, channels-last weights) is faster, and uses it for the search if so (checks
  run the model as given);
- renders sparse candidates straight into one reused buffer (``ops.sparse_perturb(out=)``),
  never all N x B images at once, in forwards of the measured size across image boundaries;
  or, for a conv-pool chain whose candidates change few pixels (FIPSO), evaluates them
  incrementally from one pass of each base image (:mod:`._incremental`);
- runs the search (fitness evaluations, gradient steps, vector-Jacobian products) in the
  precision the attack asks for (``precision``: fp32, bf16 or fp16 autocast, or "auto", the
  fastest the device runs natively, measured with the chunk size), and the checks of reported
  results in the model's own precision; in a reduced precision it measures the ``band`` by
  which the search's logits may miss the model's, so that attacks claim only successes the
  check will confirm;
- optionally feeds a compiled model (``compile``; see :mod:`._compile`) fixed-size chunks;
- counts forward images (queries) and backward passes per source image.

Attacks keep their active set small themselves (finished images leave at once); the runner
only ever sees the images still running.
"""
from __future__ import annotations

import copy
import math
import statistics
import time
import warnings
import weakref
from contextlib import nullcontext
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops
from ..fi.jacobian import activation_bytes_per_image
from ._compile import compile_pays, compiled_model, pad_to
from ._incremental import MAX_WORK_SHARE, REDUCED_DENSE_SPEEDUP, SparseForward, SparsePlan
from ._precision import autocast_dtype, check_precision, native_precisions, precision_name
from ._search_copy import pool_before_relu, use_input_grad_convs

DEFAULT_MEMORY_BUDGET = 2 << 30
#: Below this many images a call is one forward pass: nothing to gain from measuring.
_MEASURE_ABOVE = 256
#: candidates rendered all at once, not per forward, up to this many bytes of images
_RENDER_AHEAD_BYTES = 16 << 20
_CANDIDATE_CHUNKS = (32, 64, 128, 256, 512)
_MEASURE_ROUNDS = 5
#: a forward this slow (seconds) already amortises the per-call overhead: larger chunks are not
#: timed (an EoT wrapper over a random defense costs samples x the model per image)
_SLOW_FORWARD_S = 0.25
#: images the band is measured on (clean, and as many again with noise)
_BAND_PROBE = 32
#: the band: this many times the largest relative logit error the probe showed (a margin is
#: a difference of two logits)
_BAND_FACTOR = 1.0

_plans: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
#: Each model's search copy per device, kept for the next call while the model stays the same
#: (see ``_search_model``): building it (trace, fold, rewrite, check) was 14 ms of an FGS
#: dataset shard of 256 digits whose passes take 135 ms.
_copies: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
#: A model with more parameter and buffer bytes than this is not snapshotted: its copy is
#: built anew every call.
_SNAPSHOT_MAX_BYTES = 256 << 20


def timing_batch(sample: torch.Tensor, n: int) -> torch.Tensor:
    """n copies of sample's first image with fixed noise (up to 0.05, clamped to [0, 1]): the
    input every timing that chooses a configuration runs on, so that all see the same data."""
    gen = torch.Generator().manual_seed(0)
    out = sample[:1].expand(n, *sample.shape[1:]).clone()
    return out.add_(0.05 * torch.rand(out.shape, generator=gen).to(out)).clamp_(0, 1)


def _tensors(model: nn.Module):
    yield from model.named_parameters(remove_duplicate=False)
    yield from model.named_buffers(remove_duplicate=False)


def _modules(model: nn.Module) -> list:
    return [(n, type(m), m.training) for n, m in model.named_modules()]


def _model_state(model: nn.Module) -> Optional[dict]:
    """The model's modules (name, class, mode) and a copy of every parameter and buffer, or
    None when they exceed ``_SNAPSHOT_MAX_BYTES``."""
    named = list(_tensors(model))
    if sum(t.numel() * t.element_size() for _, t in named) > _SNAPSHOT_MAX_BYTES:
        return None
    return {"modules": _modules(model), "tensors": [(n, t.detach().clone()) for n, t in named]}


def _same_state(model: nn.Module, entry: dict) -> bool:
    """Whether the model still is what ``entry`` (from :func:`_model_state`) recorded."""
    if _modules(model) != entry["modules"]:
        return False
    now = list(_tensors(model))
    if len(now) != len(entry["tensors"]):
        return False
    for (n, t), (n0, t0) in zip(now, entry["tensors"]):
        if n != n0 or t.shape != t0.shape or t.dtype != t0.dtype or t.device != t0.device \
                or not torch.equal(t.detach(), t0):
            return False
    return True


def _wide(logits: torch.Tensor) -> torch.Tensor:
    """float64 logits stay float64; anything narrower becomes float32."""
    return logits if logits.dtype == torch.float64 else logits.float()


class ModelRunner:
    """Feeds ``model`` for one attack call on a batch of ``batch`` source images.

    Args:
        model: in eval mode with frozen parameters (the attack's ``frozen_eval`` does that).
        sample: images [n, C, H, W] of the batch (shape, dtype, device; the first 32 probe the
            reduced precision's band).
        batch: the number of source images; ``queries`` and ``gradients`` are [batch].
        num_classes: K, the width of the model's logits (the attack base probes it once).
        sample_logits: the model's logits [1, K] of ``sample[:1]`` if the caller has them (the
            attack base's probe): the search copy's check compares with them.
        memory_budget: bytes one forward chunk may use for activations (default 2 GiB).
        chunk_size: images per forward; None measures the fastest (cached per process).
        precision: "fp32", "bf16", "fp16" (autocast for the search) or "auto" (measured).
        search_copy: None measures; True/False forces the search copy (see ``_search_model``).
        compile: False, True (compile when the call is long enough, see ``compile_pays``) or
            "always"; ``compile_backend`` is torch.compile's backend.
    """

    def __init__(self, model: nn.Module, sample: torch.Tensor, batch: int, *, num_classes: int = 0,
                 memory_budget: Optional[int] = None, chunk_size: Optional[int] = None,
                 precision="fp32", search_copy: Optional[bool] = None, compile=False,
                 compile_backend: str = "inductor", incremental: Optional[bool] = None,
                 sample_logits: Optional[torch.Tensor] = None):
        self.model = model
        self.num_classes = num_classes
        self.sample = sample[:1].detach()
        # the model's logits of sample[:1] where the caller has them (the attack's probe for K):
        # the search copy's check compares with them instead of running the model again
        self._sample_logits = sample_logits
        self.probe = sample[:_BAND_PROBE].detach()
        self.device = sample.device
        self.dtype = sample.dtype
        self.budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
        self.precision = precision_name(precision)
        check_precision(self.precision, self.device)
        self.queries = torch.zeros(batch, dtype=torch.long, device=self.device)
        self.gradients = torch.zeros(batch, dtype=torch.long, device=self.device)
        self._fixed_chunk = chunk_size
        self._search_copy = search_copy
        self._compile, self._backend = compile, compile_backend
        self._compiled = None  # the CompiledModel once this call decided to compile
        self._compile_chunk = 0
        self._used: dict = {}  # pass kind (grad?) -> whether this call's search used the compiled model
        self._compiles_before = (0, 0.0)
        self._buffer: Optional[torch.Tensor] = None
        self._copy: Optional[nn.Module] = None  # this call's search copy (see _search_model)
        self._copy_built = False
        self._copy_entry: Optional[dict] = None  # its entry in _copies, shared with later calls
        self._incremental = incremental
        self._sparse_net: Optional[SparseForward] = None
        self._sparse_net_built = False
        self._sparse_cache: Optional[tuple] = None  # (base, lookup owner -> row, plan) of the last prepare
        self.incremental_used = False  # whether any candidates went through the incremental pass
        # (chunk, search copy, precision, s per image or None, final) once final for this call
        self._plan: Optional[tuple] = None
        self._search: Optional[str] = None  # the precision of this call's search, fixed at its first plan
        self._band: Optional[float] = None
        self.forward_s = 0.0  # wall time inside the model's forward passes
        self._expected = 0  # images the whole call will evaluate, when the attack says so

    def expect(self, total: int) -> None:
        """The attack will evaluate about ``total`` images in this call (PGD: images x steps):
        worth measuring the plan (and, with ``precision="auto"``, the precision) even if every
        single forward is small. Call it before the first evaluation."""
        self._expected = int(total)

    # --- the plan: chunk size, memory format and precision, measured once -----------------

    def _key(self):
        return (tuple(self.sample.shape[1:]), self.dtype, self.device, self.precision, self._search_copy,
                self._cap(), self._fixed_chunk)

    def _cap(self) -> int:
        act = activation_bytes_per_image(self.model, self.sample)
        return max(1, self.budget // max(1, 2 * act))

    def plan(self, n: int) -> tuple[int, bool]:
        """(images per forward, use the search copy) for a call that evaluates ``n`` images.
        A fixed ``chunk_size`` still has the choice of model measured (unless forced)."""
        if self._plan is None:
            plan = self._find_plan(n)
            if self._search is None:  # one precision for the whole call: its band and its decisions
                self._search = plan[2]
                self._start_compile(plan)
            if not plan[4]:  # not measured: a later, larger evaluation may still measure
                return plan[0], plan[1]
            self._plan = plan
        return self._plan[0], self._plan[1]

    @property
    def search_precision(self) -> str:
        """The precision of this call's search ("fp32", "bf16" or "fp16"), fixed at the first plan."""
        if self._search is None:
            if self.precision != "auto":
                return self.precision
            self.plan(max(1, self._expected))
        return self._search

    def _find_plan(self, n: int) -> tuple:
        fixed = "fp32" if self.precision == "auto" else self.precision
        if self._fixed_chunk is not None and self._search_copy is not None and self.precision != "auto":
            return self._fixed_chunk, bool(self._search_copy) and self._search_model() is not None, fixed, None, True
        cache = _plans.setdefault(self.model, {})
        key = self._key()
        if key not in cache:
            if max(n, self._expected) <= _MEASURE_ABOVE and self._fixed_chunk is None:
                # too little work to measure: float32 for "auto", where nothing is known yet
                return (min(n, self._cap()), bool(self._search_copy) and self._search_model() is not None, fixed, None,
                        False)
            cache[key] = self._measure()
        return cache[key]

    def _measure(self) -> tuple:
        """Times a forward at each candidate chunk size, with the model as given and with the
        search copy, and (for "auto") in float32 and each precision the device runs natively;
        keeps the fastest per image. A few seconds on a small CNN, once per model and shape in
        a process."""
        cap = self._cap()
        sizes = [self._fixed_chunk] if self._fixed_chunk else ([s for s in _CANDIDATE_CHUNKS if s <= cap] or [cap])
        big = timing_batch(self.sample, max(sizes))
        formats = [False, True] if self._search_model() is not None else [False]
        if self._search_copy is not None:
            formats = [f for f in formats if f == self._search_copy] or [False]
        precs = ["fp32"] + native_precisions(self.device) if self.precision == "auto" else [self.precision]
        configs = []
        for prec in precs:
            for cl in formats:  # warm-up (allocator, oneDNN primitive creation), smallest size first
                for s in sizes:
                    t0 = self._clock()
                    self._eager_logits(big[:s], cl, prec)
                    configs.append((s, cl, prec))
                    if self._clock() - t0 > _SLOW_FORWARD_S:
                        break
        # Alternating rounds, median per configuration: a noisy machine slows them all alike.
        times: dict = {c: [] for c in configs}
        for r in range(_MEASURE_ROUNDS if len(configs) > 1 else 1):
            for s, cl, prec in (configs if r % 2 == 0 else configs[::-1]):
                t0 = self._clock()
                self._eager_logits(big[:s], cl, prec)
                times[(s, cl, prec)].append((self._clock() - t0) / s)
        per_image = {c: statistics.median(t) for c, t in times.items()}
        best = min(per_image.values())
        # The smallest size within 3 % of the best: as fast, and less memory.
        chunk, cl, prec = min((k for k, t in per_image.items() if t <= best / 0.97),
                              key=lambda k: (k[0], per_image[k]))
        return chunk, bool(cl), prec, per_image[(chunk, cl, prec)], True

    def _clock(self) -> float:
        """time.perf_counter() once the device has finished its queued work: a measurement that
        decides something (chunk, precision, compiled or not) must time the kernels, not their
        launches."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def _start_compile(self, plan) -> None:
        """Decides, once per call, whether the search runs a compiled model (``compile_pays``)."""
        expected_s = None if plan[3] is None else plan[3] * max(self._expected, 1)
        if compile_pays(self._compile, expected_s, self.model, self._backend):
            self._compiled = compiled_model(self.model, self._backend)
            self._compile_chunk = plan[0]  # every compiled forward has this many images
            self._compiles_before = (self._compiled.compilations, self._compiled.compile_s)

    @property
    def compile_stats(self) -> dict:
        """This call's compilations and the seconds they took (empty when nothing was compiled)."""
        if self._compiled is None:
            return {}
        n0, s0 = self._compiles_before
        return {"backend": self._backend, "compilations": self._compiled.compilations - n0,
                "compile_s": self._compiled.compile_s - s0,
                "compiled_used": {("backward" if g else "forward"): v for g, v in self._used.items()}}

    # --- the reduced precision's band ------------------------------------------------------

    @property
    def band_rel(self) -> float:
        """How far the search's margins may be from the model's own, relative to the largest
        |logit| of the image: 0 in float32; in a reduced precision _BAND_FACTOR x the largest
        max_k |z_search - z_model| / max_k |z_model| measured on this call's first images, clean
        and with noise (bf16: about 1 % of the largest logit on the digits CNN, 1.6-2 % on
        ResNet-32; relative, since the absolute error grows with the logits)."""
        if self._band is None:
            self._band = 0.0
            if self.search_precision != "fp32" and len(self.probe):
                gen = torch.Generator().manual_seed(0)
                noisy = (self.probe + 0.1 * torch.randn(self.probe.shape, generator=gen).to(self.probe)).clamp(0, 1)
                probe = torch.cat([self.probe, noisy])
                _, cl = self.plan(len(probe))
                exact = self._eager_logits(probe, False, "fp32").float()
                search = self._logits(probe, cl).float()
                rel = (search - exact).abs().amax(1) / exact.abs().amax(1).clamp_min(1e-12)
                band = _BAND_FACTOR * float(rel.max())
                if not math.isfinite(band):  # fp16's range (65504) overflowed in the model
                    raise ValueError(f"option precision={self.search_precision!r} is not allowed for this model: "
                                     f"its search logits are not finite where float32's are (an overflow); "
                                     f"use 'bf16' or 'fp32'")
                self._band = band
        return self._band

    @property
    def measured_band(self) -> Optional[float]:
        """:attr:`band_rel` if this call measured it (an attack that never claims a success,
        such as FGS, never pays for the probe), else None; 0.0 in float32."""
        return 0.0 if self.search_precision == "fp32" else self._band

    def band(self, logits: torch.Tensor):
        """The band [...] of logits [..., K]: how far a margin the search sees may be from the
        model's own (0.0, a float, in float32)."""
        if self.band_rel == 0.0:
            return 0.0
        return self.band_rel * logits.detach().float().abs().amax(-1)

    def handicap(self, logits: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor]) -> torch.Tensor:
        """The search's logits [..., K] with the odds set against the attack by the band: the true
        class's logit raised by it (untargeted) or the target's lowered. A criterion or loss on
        them holds only where the check in the model's precision agrees, and a search that
        settles at their decision boundary settles beyond the band. The logits themselves in
        float32."""
        if self.band_rel == 0.0:
            return logits
        z = logits.float()
        cls, sign = (y, 1.0) if target is None else (target, -1.0)
        cls = cls.expand(z.shape[:-1])[..., None]
        return z.scatter_add(-1, cls, sign * self.band(z)[..., None])

    def hit(self, logits: torch.Tensor, y: torch.Tensor, target: Optional[torch.Tensor]) -> torch.Tensor:
        """Success as a search may claim it from its logits [..., K]: misclassified / classified
        as the target, on the :meth:`handicap`-ped logits (beyond the band in a reduced
        precision); y and target broadcast against [...]."""
        pred = self.handicap(logits, y, target).argmax(-1)
        return pred != y if target is None else pred == target

    def _search_model(self) -> Optional[nn.Module]:
        """A copy of the model for the search, faster on a CPU and equal in function, or None.

        Batch-norm layers that follow a convolution are folded into it (torch.fx's fuse: one
        pass instead of two over the activations, 19 % of the digits CNN's forward), and a
        conv net's weights go to channels-last. A grey-scale batch [N, 1, H, W] counts as
        contiguous in both formats, so the input alone leaves the model in NCHW, where CPU
        max-pooling is 10-20x slower (40 % of the digits CNN's forward); channels-last weights
        make oneDNN produce channels-last outputs whatever the input. On a CPU a one-channel
        convolution's input gradient takes a matrix product and a col2im instead of oneDNN's
        backward, and a ReLU before a max-pool moves after it (:mod:`._search_copy`); the
        copy's weights get no gradient. The copy is checked against the model on two images
        (a model that traces badly, views its conv outputs or is random gets None) and never
        replaces it where a result is reported: checks run the model as given.

        A later call reuses the copy while the model is the same: the same modules in the same
        modes, every parameter and buffer equal to the snapshot taken when the copy was made
        (a training step in between makes a new copy), and the two-image check passing on that
        call's images (a changed attribute that the trace baked in)."""
        if self._copy_built:
            return self._copy
        self._copy_built = True
        if self._search_copy is False or not any(isinstance(m, nn.Conv2d) for m in self.model.modules()):
            return None
        two = self.sample.expand(2, *self.sample.shape[1:]).clone()  # one image fits .view in any format
        entries = _copies.setdefault(self.model, {})
        entry = entries.get(self.device)
        if entry is not None and _same_state(self.model, entry) and (
                entry["copy"] is None or self._agrees(entry["copy"], two)):
            self._copy_entry, self._copy = entry, entry["copy"]
            return self._copy
        entries.pop(self.device, None)
        search = self._build_copy()
        if search is not None and not self._agrees(search, two):
            search = None
        self._copy = search
        state = _model_state(self.model)
        if state is not None:
            self._copy_entry = entries[self.device] = {**state, "copy": search}
        return search

    def _build_copy(self) -> Optional[nn.Module]:
        try:
            try:
                # The import and tracing raise torch's own deprecation notices (torch.jit inside
                # torch.utils.mkldnn), nothing a user can act on.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    from torch.fx.experimental.optimization import fuse

                    search = fuse(self.model)
            except Exception:  # not traceable by torch.fx: keep the modules, convert the weights only
                search = copy.deepcopy(self.model)
            search = search.to(memory_format=torch.channels_last).eval()
            if self.device.type == "cpu":  # shorter passes, the same function (see ._search_copy)
                use_input_grad_convs(search)
                if isinstance(search, torch.fx.GraphModule):
                    pool_before_relu(search)
        except Exception:
            return None
        return search

    def _agrees(self, search: nn.Module, two: torch.Tensor) -> bool:
        """Whether the copy's logits match the model's on two images (the model's from the
        caller's probe of the sample, where it gave them)."""
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                a = self.model(two) if self._sample_logits is None else self._sample_logits.expand(2, -1)
                b = search(two.contiguous(memory_format=torch.channels_last))
        except Exception:
            return False
        finally:
            self.forward_s += time.perf_counter() - t0  # forward passes of this call
        return a.shape == b.shape and bool(torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-4))

    # --- forward passes --------------------------------------------------------------------

    def _autocast(self, precision: Optional[str] = None):
        dtype = autocast_dtype(precision or self.search_precision)
        return nullcontext() if dtype is None else torch.autocast(self.device.type, dtype=dtype)

    def _eager_logits(self, images: torch.Tensor, search_copy: bool, precision: str) -> torch.Tensor:
        """Logits of one chunk, eagerly, in ``precision`` (fp32: the model's own), through the
        search copy if asked."""
        model = self.model
        if search_copy:
            model = self._search_model() or self.model
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode(), self._autocast(precision):
            return model(images)

    def _through_compiled(self, n: int, grad: bool = False) -> bool:
        """Whether a chunk of n images goes through the compiled model, padded to the fixed
        chunk: where a padded compiled pass takes less time than n images of the eager search,
        by the ratio :meth:`_compiled_ratio` measured for this kind of pass (never where the
        compiled model is the slower one)."""
        if self._compiled is None or n > self._compile_chunk:
            return False
        key = (grad, self.search_precision, tuple(self.sample.shape[1:]), self.dtype, self._compile_chunk,
               self._eager_copy())
        if key not in self._compiled.verdicts:
            self._compiled.verdicts[key] = self._compiled_ratio(grad)
        ratio = self._compiled.verdicts[key]
        use = ratio < 1 and n >= ratio * self._compile_chunk
        self._used[grad] = self._used.get(grad, False) or use
        return use

    def _eager_copy(self) -> bool:
        return bool(self._plan[1]) if self._plan is not None else False

    def _compiled_ratio(self, grad: bool) -> float:
        """time(compiled) / time(eager search, the search copy where the plan chose it) of one
        full chunk, after compiling, in alternating rounds: on a CPU, oneDNN's channels-last
        convolutions with batch norm folded in can beat what inductor generates (on this
        project's CPU the compiled passes were used for no attack: benchmarks/precision.py).
        Once per (pass kind, precision, shape, chunk) in a process."""
        imgs = timing_batch(self.sample, self._compile_chunk)
        copy_ = self._eager_copy()
        eager_model = (self._search_model() if copy_ else None) or self.model

        def compiled():
            if not grad:
                with torch.inference_mode(), self._autocast():
                    return self._compiled(pad_to(imgs, self._compile_chunk))
            xi = pad_to(imgs, self._compile_chunk).requires_grad_(True)
            with torch.enable_grad(), self._autocast():
                return torch.autograd.grad(self._compiled(xi).float().sum(), xi)

        def eager():
            if not grad:
                return self._eager_logits(imgs, copy_, self.search_precision)
            fmt = torch.channels_last if eager_model is not self.model else torch.contiguous_format
            xi = imgs.clone(memory_format=fmt).requires_grad_(True)
            with torch.enable_grad(), self._autocast():
                return torch.autograd.grad(eager_model(xi).float().sum(), xi)

        # The first call compiles; a backward graph compiles lazily, during the first backward,
        # outside CompiledModel's own timing: the whole first call counts as compile time.
        before, t0 = self._compiled.compile_s, self._clock()
        compiled()
        self._compiled.compile_s = before + (self._clock() - t0)
        eager()
        times: dict = {compiled: [], eager: []}
        for r in range(_MEASURE_ROUNDS):
            for fn in ((compiled, eager) if r % 2 == 0 else (eager, compiled)):
                t0 = self._clock()
                fn()
                times[fn].append(self._clock() - t0)
        return statistics.median(times[compiled]) / statistics.median(times[eager])

    def _logits(self, images: torch.Tensor, search_copy: bool, exact: bool = False) -> torch.Tensor:
        """Logits of one chunk. Checks (``exact``) run the model exactly as the user gave it;
        the search runs in its precision, through the search copy or the compiled model."""
        if exact:
            return self._eager_logits(images, False, "fp32")
        if self._through_compiled(len(images)):
            with torch.inference_mode(), self._autocast():
                return self._compiled(pad_to(images, self._compile_chunk))[:len(images)]
        return self._eager_logits(images, search_copy, self.search_precision)

    def _forward(self, images: torch.Tensor, exact: bool) -> torch.Tensor:
        """Logits of images [n, ...] in chunks of the plan's size, timed."""
        chunk, search_copy = self.plan(len(images))
        t0 = time.perf_counter()
        out = [self._logits(images[i:i + chunk], search_copy, exact) for i in range(0, len(images), chunk)]
        self.forward_s += time.perf_counter() - t0
        return torch.cat(out) if out else images.new_zeros(0, self.num_classes)

    def probs(self, images: torch.Tensor, owners: torch.Tensor, *, exact: bool = False) -> torch.Tensor:
        """Probabilities [n, K] (float32, float64 for a float64 model) of images [n, C, H, W];
        ``owners`` [n] names each image's source image, whose query count goes up by one per
        image. ``exact=True`` runs the model as given, in its own precision (for checks)."""
        self.queries.index_add_(0, owners, torch.ones_like(owners))
        return F.softmax(_wide(self._forward(images, exact)), dim=1)

    def logits(self, images: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        """Logits [n, K] as the search sees them (its precision), counted."""
        self.queries.index_add_(0, owners, torch.ones_like(owners))
        return self._forward(images, exact=False)

    def probs_sparse(self, base: torch.Tensor, idx: torch.Tensor, values: torch.Tensor, owners: torch.Tensor, *,
                     logits: bool = False) -> torch.Tensor:
        """Probabilities [b, N, K] of the candidates base + values at idx (clamped to [0, 1]):
        base [b, C, H, W], idx [b, m] flat component indices, values [b, N, m]. Candidates are
        rendered chunk by chunk into one reused buffer and never held all at once
        (``logits=True``: the logits, float32 or float64)."""
        flat = base.reshape(len(base), -1)
        idx, values = idx.contiguous(), values.contiguous()
        found = self._sparse_plan(base, idx, owners)
        if found is not None:
            return self._probs_incremental(*found, values, owners, softmax=not logits)
        return self._probs_rendered(base, values.shape[1], owners, lambda a, b, n0, n1, out: ops.sparse_perturb(
            flat[a:b], idx[a:b], values[a:b], n0, n1, out=None if out is None else out.view(len(out), -1)),
            softmax=not logits)

    def _sparse_plan(self, base: torch.Tensor, idx: torch.Tensor, owners: torch.Tensor) -> Optional[tuple]:
        """(plan, rows): the incremental plan holding these images and indices and their rows
        in it, or None for the dense path.

        ``incremental``: None (on the CPU, when the estimated work per candidate is at most
        ``MAX_WORK_SHARE`` of a dense float32 forward, or of a reduced-precision one, which
        is ``REDUCED_DENSE_SPEEDUP`` times faster: a deterministic rule, so every process
        chooses alike), True (wherever the model qualifies) or False (never). The pass runs in
        the model's dtype also in a reduced-precision search: exact, and there the faster.
        One plan serves the call: an attack asks again for its active images, whose rows the
        plan selects (checked: same base images, same indices)."""
        if self._incremental is False or len(base) == 0:
            return None
        auto = self._incremental is None
        if auto and self.device.type != "cpu":
            return None
        if not self._sparse_net_built:
            self._sparse_net_built = True
            copy_ = self._search_model()
            entry = self._copy_entry
            if entry is not None and "sparse" in entry:  # made from the same copy by an earlier call
                self._sparse_net = entry["sparse"]
            else:
                self._sparse_net = SparseForward.of(copy_) if copy_ is not None else None
                if entry is not None:
                    entry["sparse"] = self._sparse_net
        if self._sparse_net is None:
            return None
        rows = None
        if self._sparse_cache is not None:
            cached_base, lookup, full = self._sparse_cache
            found = lookup[owners.clamp(max=len(lookup) - 1)]
            if bool((owners < len(lookup)).all() and (found >= 0).all()) and \
                    torch.equal(full.idx[found], idx) and torch.equal(cached_base[found], base):
                rows = found
        if rows is None:
            full = self._sparse_net.prepare(base, idx)
            if full is None:
                self._sparse_cache = None
                return None
            lookup = torch.full((int(owners.max()) + 1,), -1, dtype=torch.long, device=owners.device)
            lookup[owners] = torch.arange(len(owners), device=owners.device)
            self._sparse_cache = (base.clone(), lookup, full)
        limit = MAX_WORK_SHARE if self.search_precision == "fp32" else MAX_WORK_SHARE / REDUCED_DENSE_SPEEDUP
        if auto and full.work_share > limit:
            return None
        return full, torch.arange(len(base), device=base.device) if rows is None else rows

    def _probs_incremental(self, plan: SparsePlan, rows: torch.Tensor, values: torch.Tensor, owners: torch.Tensor,
                           softmax: bool) -> torch.Tensor:
        """probs_sparse through the incremental plan, whose ``rows`` hold the images: groups of
        images per call, about a thousand candidates at a time (the throughput is flat in the
        size from 200 to 5000)."""
        b, N = values.shape[:2]
        self.queries.index_add_(0, owners, torch.full_like(owners, N))
        self.incremental_used = True
        per = max(1, 1024 // max(N, 1))
        t0 = time.perf_counter()
        out = []
        for g0 in range(0, b, per):
            # a few MB of the plan's per-image tensors per chunk, against ~40 ms of its passes
            out.append(_wide(plan.select(rows[g0:g0 + per]).logits(values[g0:g0 + per])))
        self.forward_s += time.perf_counter() - t0
        z = torch.cat(out)
        return F.softmax(z, dim=2) if softmax else z

    def probs_pixels(self, base: torch.Tensor, candidates: torch.Tensor, owners: torch.Tensor, *,
                     logits: bool = False, need: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Probabilities [b, N, K] of one-pixel-style candidates [b, N, d * (2 + C)] (row, col,
        a value per channel in [0, 1], per pixel) rendered over base [b, C, H, W] by
        ``ops.pixel_replace``, chunk by chunk as :meth:`probs_sparse` (``logits=True``: the
        logits, float32 or float64, for margins that saturated probabilities would lose).
        ``need`` [b, N] bool: only those candidates are rendered, classified and counted (NaN
        elsewhere), in forwards of the planned size across images."""
        S = 2 + base.shape[1]
        base = base.contiguous()
        candidates = candidates.reshape(*candidates.shape[:2], -1, S).contiguous()
        if need is not None:
            return self._probs_needed(base, candidates, owners, need, softmax=not logits)
        return self._probs_rendered(base, candidates.shape[1], owners, lambda a, b, n0, n1, out: ops.pixel_replace(
            base[a:b], candidates[a:b], n0, n1, out=out), softmax=not logits)

    def _probs_needed(self, base: torch.Tensor, candidates: torch.Tensor, owners: torch.Tensor,
                      need: torch.Tensor, softmax: bool) -> torch.Tensor:
        """probs_pixels for the candidates ``need`` marks, NaN elsewhere: the needed ones as a
        sequence of one candidate per image for :meth:`_probs_rendered`, each chunk's images
        gathered as it renders them."""
        b, N = need.shape
        if need.shape != candidates.shape[:2]:
            raise ValueError(f"need must be [b, N] = {list(candidates.shape[:2])}, got {list(need.shape)}")
        flat = need.flatten().nonzero().flatten()
        img = flat // N
        chosen = candidates.view(b * N, 1, *candidates.shape[2:])[flat]
        # stands for the needed candidates' images: only its length, shape and dtype are read
        rows = base[:1].expand(len(flat), *base.shape[1:])
        p = self._probs_rendered(rows, 1, owners[img], lambda a, c, n0, n1, out: ops.pixel_replace(
            base[img[a:c]], chosen[a:c], n0, n1, out=out), softmax=softmax)
        out = torch.full((b * N, p.shape[-1]), math.nan, dtype=p.dtype, device=base.device)
        out[flat] = p[:, 0]
        return out.view(b, N, -1)

    def _probs_rendered(self, base: torch.Tensor, N: int, owners: torch.Tensor, render: Callable,
                        softmax: bool = True) -> torch.Tensor:
        """Probabilities [b, N, K] of b x N candidates that ``render(a, b, n0, n1, out)`` draws
        (candidates n0..n1-1 of images a..b-1, into ``out`` [rows, C, H, W] or a new tensor);
        the logits with ``softmax=False``."""
        b = len(base)
        if b == 0 or N == 0:
            return base.new_zeros(b, N, self.num_classes, dtype=torch.float32)
        shape = base.shape[1:]
        chunk, _ = self.plan(b * N)
        self.queries.index_add_(0, owners, torch.full_like(owners, N))
        # The b*N candidates as one sequence, cut into equal forwards of at most `chunk` images
        # (1000 at chunk 128: 8 of 125), across image boundaries: every forward runs at the
        # measured size, also when only a few images are left.
        total = b * N
        size = math.ceil(total / math.ceil(total / chunk))
        # Small images are rendered all at once and each forward takes a view: per forward, the
        # render calls and their bookkeeping were a large part of OnePixel's time outside the
        # model on the 8x8 digits (some 1450 forwards of 250 candidates a call).
        whole = self._render_range(base, N, render, 0, total) \
            if total * base[0].numel() * base.element_size() <= _RENDER_AHEAD_BYTES else None
        out: Optional[torch.Tensor] = None
        for s0 in range(0, total, size):
            s1 = min(total, s0 + size)
            imgs = whole[s0:s1] if whole is not None else self._render_range(base, N, render, s0, s1)
            z = _wide(self._forward(imgs.view(-1, *shape), exact=False))
            p = F.softmax(z, dim=1) if softmax else z
            if out is None:
                out = torch.empty(total, p.shape[1], dtype=p.dtype, device=base.device)
            out[s0:s1] = p
        return out.view(b, N, -1)

    def _render_range(self, base, N: int, render: Callable, s0: int, s1: int) -> torch.Tensor:
        """Candidates s0..s1-1 of the flattened [b * N] sequence, rendered into the reused buffer:
        at most three kernel calls (the end of one image, whole images, the start of another)."""
        P = base[0].numel()
        pieces = []  # (first image, last image + 1, n0, n1)
        j0, j1 = s0 // N, (s1 - 1) // N
        if j0 == j1:
            pieces.append((j0, j0 + 1, s0 - j0 * N, s1 - j0 * N))
        else:
            head = j0 + (s0 % N != 0)
            if s0 % N:
                pieces.append((j0, j0 + 1, s0 - j0 * N, N))
            tail = j1 if s1 % N else j1 + 1
            if tail > head:
                pieces.append((head, tail, 0, N))
            if s1 % N:
                pieces.append((j1, j1 + 1, 0, s1 - j1 * N))
        if base.device.type != "cpu":
            return torch.cat([render(a, b, n0, n1, None).reshape(-1, P) for a, b, n0, n1 in pieces])
        need = (s1 - s0) * P
        if self._buffer is None or self._buffer.numel() < need or self._buffer.dtype != base.dtype:
            self._buffer = torch.empty(need, dtype=base.dtype)
        row = 0
        for a, b, n0, n1 in pieces:
            rows = (b - a) * (n1 - n0)
            render(a, b, n0, n1, self._buffer[row * P:(row + rows) * P].view(rows, *base.shape[1:]))
            row += rows
        return self._buffer[:need].view(s1 - s0, P)

    def loss_grad(self, images: torch.Tensor, owners: torch.Tensor,
                  loss: Callable[..., torch.Tensor], *aligned: torch.Tensor, return_logits: bool = False):
        """d loss(logits, *aligned)/d images, loss returning one value per image (summed for
        the backward); ``aligned`` are per-image tensors (classes, rows) cut into the same chunks
        as the images; one forward and one backward per image, counted, in the search's
        precision (through the search copy or the compiled model where the plan has them).
        ``return_logits`` also returns the logits of that forward (detached)."""
        self.queries.index_add_(0, owners, torch.ones_like(owners))
        self.gradients.index_add_(0, owners, torch.ones_like(owners))
        chunk, search_copy = self.plan(len(images))
        # The search copy where the plan found it faster (the digits CNN: 1.3-1.45x per forward
        # and backward): the same function, so the same gradient up to rounding; what an attack
        # reports is still checked with the model as given.
        model = (self._search_model() if search_copy else None) or self.model
        fmt = torch.channels_last if model is not self.model and images.dim() == 4 else torch.contiguous_format
        grads, logits = [], []
        for i in range(0, len(images), chunk):
            xi = images[i:i + chunk].detach()
            n = len(xi)
            compiled = self._through_compiled(n, grad=True)
            # the padded rows are inputs too (one leaf of one shape: no recompile), outside the loss
            xi = pad_to(xi, self._compile_chunk) if compiled else xi.clone(memory_format=fmt)
            xi.requires_grad_(True)
            with torch.enable_grad(), self._autocast():
                t0 = time.perf_counter()
                z = (self._compiled if compiled else model)(xi)[:n]
                total = loss(z, *(a[i:i + chunk] for a in aligned)).sum()
                # a model whose output does not depend differentiably on its input (a shattered-
                # gradient defense) has a zero gradient, not an error
                g = torch.autograd.grad(total, xi, allow_unused=True)[0] if total.requires_grad else None
                self.forward_s += time.perf_counter() - t0
            grads.append(torch.zeros_like(xi[:n]) if g is None else g[:n].to(images.dtype).contiguous())
            logits.append(_wide(z.detach()))
        grad = torch.cat(grads) if grads else torch.zeros_like(images)
        if return_logits:
            return grad, (torch.cat(logits) if logits else images.new_zeros(0, 0))
        return grad

    def vjps(self, images: torch.Tensor, owners: torch.Tensor, cotangents: Callable, layer: Optional[nn.Module] = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Vector-Jacobian products: one forward and D backward passes per image.

        ``cotangents(h, z, rows) -> (W_h [D_h, n, ...] or None, W_z [D_z, n, K] or None)``
        receives the detached features h of ``layer`` (a module of the model; None: h is the
        logits z) and the logits of a chunk, with the chunk's rows, and returns the vectors to pull
        back through the network; the result is d(W . h)/d images for each of them, then
        d(W . z)/d images, [D_h + D_z, n, C, H, W], with h and z [n, ...] detached. The graph of
        one forward serves every product (no repeated forwards), in the search's precision (the
        model as given: a layer hook needs its modules); each image counts one query and D
        gradients."""
        captured: list = []
        hook = None
        if layer is not None:
            hook = layer.register_forward_hook(lambda mod, inp, out: captured.append(out))
        chunk, _ = self.plan(len(images))
        grads, hs, zs = [], [], []
        n_dirs = 0
        try:
            for i in range(0, len(images), chunk):
                xi = images[i:i + chunk].detach().clone().requires_grad_(True)
                captured.clear()
                with torch.enable_grad(), self._autocast():
                    t0 = time.perf_counter()
                    z = self.model(xi)
                    h = z if layer is None else captured[-1]
                    if not isinstance(h, torch.Tensor):
                        raise TypeError(f"the layer's output must be a tensor, got {type(h).__name__}")
                    rows = torch.arange(i, i + len(xi), device=images.device)
                    wh, wz = cotangents(_wide(h.detach()), _wide(z.detach()), rows)
                    pulls = [(h, w) for w in (wh if wh is not None else [])] + \
                            [(z, w) for w in (wz if wz is not None else [])]
                    out = []
                    for d, (t, w) in enumerate(pulls):
                        (g,) = torch.autograd.grad(t, xi, w.to(t.dtype), retain_graph=d < len(pulls) - 1,
                                                   allow_unused=True)
                        out.append(torch.zeros_like(xi) if g is None else g)
                    self.forward_s += time.perf_counter() - t0
                n_dirs = len(pulls)
                grads.append(torch.stack(out) if out else xi.new_zeros(0, *xi.shape))
                hs.append(_wide(h.detach()))
                zs.append(_wide(z.detach()))
        finally:
            if hook is not None:
                hook.remove()
        self.queries.index_add_(0, owners, torch.ones_like(owners))
        self.gradients.index_add_(0, owners, torch.full_like(owners, n_dirs))
        return torch.cat(grads, 1), torch.cat(hs), torch.cat(zs)
