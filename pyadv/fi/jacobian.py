"""Batched gradients of log-probabilities with respect to the input, streamed.

For a batch x [N, C, H, W] and per image a list of M classes ("slots"; by default all K
classes), this yields J[b, m, :] = d log P(classes[b, m] | x_b) / d x_b flattened to P = C*H*W,
a chunk of slots at a time and a sub-batch of images at a time, so that memory stays
O(sub_batch * (activations + chunk * P)) whatever N and K are.

Strategies (all give the same numbers):
  "loop"     one backward pass per slot over the whole sub-batch (samples are independent in
             eval mode, so the gradient of sum_b log P(x_b) is every image's own gradient);
  "batched"  autograd.grad with is_grads_batched (vmap over the backward pass);
  "vmap"     torch.func.vmap(jacrev) of the per-image function.
"auto" is "loop" over sub-batches of 64 images (fewer when the memory budget says so), with
channels-last inputs for convolutional models that accept them: the fastest combination on
this machine in benchmarks/fi_model.py (its JSON has every alternative side by side).
"""
from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

from ._inputs import check_logits

STRATEGIES = ("auto", "loop", "batched", "vmap")

#: Default memory budget for one sub-batch (autograd activations plus Jacobian chunks).
DEFAULT_MEMORY_BUDGET = 2 << 30
#: Sub-batch of the "auto" plan. benchmarks/fi_model.py (2 cores): 16-64 beat the whole
#: batch of 256 on the digits CNN, 64 beat 8-32 on ResNet-32; 64 is the best common choice.
AUTO_SUB_BATCH = 64


@dataclass(frozen=True)
class Plan:
    strategy: str
    sub_batch: int
    chunk: int
    activation_bytes: int  # forward activations of one image, as measured
    channels_last: bool = False


@dataclass
class SubBatch:
    rows: slice
    probs: torch.Tensor              # [n, K], detached
    classes: Optional[torch.Tensor]  # [n, M] class of each slot, or None: slot m is class m
    chunks: Iterator[tuple[int, torch.Tensor]]  # (m0, jac [n, mc, P]); consume before the next sub-batch


_activation_cache: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()
_channels_last_cache: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def accepts_channels_last(model: nn.Module, x1: torch.Tensor) -> bool:
    """Whether channels-last inputs are worth it (the model has 2-D convolutions: CPU conv
    kernels run faster on them) and work (a model that calls .view on a conv output fails on
    them; probed once on one image, cached per model and input shape)."""
    if not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return False
    key = (tuple(x1.shape[1:]), x1.dtype, x1.device)
    cache = _channels_last_cache.setdefault(model, {})
    if key not in cache:
        try:
            # Two images: a [1, C, H, W] tensor's strides fit .view in either format, so a model
            # that views its conv outputs would pass a one-image probe and fail on batches.
            two = x1[:1].expand(2, *x1.shape[1:]).clone()
            with torch.no_grad():
                a = model(two)
                b = model(two.clone(memory_format=torch.channels_last))  # as stream() makes it
            cache[key] = bool(torch.allclose(a, b, rtol=1e-4, atol=1e-5))
        except RuntimeError:
            cache[key] = False
    return cache[key]


def activation_bytes_per_image(model: nn.Module, x1: torch.Tensor) -> int:
    """Bytes of every leaf module's output for one image (a forward pass with hooks), cached
    per model and input shape."""
    key = (tuple(x1.shape[1:]), x1.dtype, x1.device)
    cache = _activation_cache.setdefault(model, {})
    if key in cache:
        return cache[key]
    total = 0

    def hook(_m, _inp, out):
        nonlocal total
        if isinstance(out, torch.Tensor):
            total += out.numel() * out.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            model(x1[:1])
    finally:
        for h in handles:
            h.remove()
    cache[key] = max(total, x1[:1].numel() * x1.element_size())
    return cache[key]


def make_plan(model: nn.Module, x: torch.Tensor, n_slots: int, *, strategy: str = "auto",
              sub_batch: Optional[int] = None, chunk: Optional[int] = None,
              memory_budget: Optional[int] = None, channels_last: Optional[bool] = None) -> Plan:
    """How to stream the Jacobian of x: strategy, sub-batch, slots per chunk, memory format.
    Everything left None is chosen automatically (module docstring)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
    if budget <= 0:
        raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
    for name, v in (("sub_batch", sub_batch), ("chunk", chunk)):
        if v is not None and (not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be None (automatic) or an int >= 1, got {v!r}")
    strategy = "loop" if strategy == "auto" else strategy
    P = x[0].numel()
    elem = x.element_size()
    act = activation_bytes_per_image(model, x) if len(x) else P * elem
    if chunk is None:
        chunk = {"loop": 1, "batched": min(n_slots, 10), "vmap": n_slots}[strategy]
    chunk = max(1, min(chunk, max(n_slots, 1)))
    # Activations are kept for the backward passes (x3 for saved tensors and gradients);
    # a Jacobian chunk and the two FI accumulators come on top; vmap holds all slots at once.
    slots_held = n_slots if strategy == "vmap" else chunk
    per_image = 3 * act + (slots_held + 3) * P * elem
    if sub_batch is None:
        sub_batch = AUTO_SUB_BATCH
    sub_batch = max(1, min(sub_batch, budget // per_image, max(len(x), 1)))
    if channels_last is None:
        channels_last = strategy != "vmap" and len(x) > 0 and accepts_channels_last(model, x)
    return Plan(strategy, sub_batch, chunk, act, bool(channels_last))


def _slot_log_probs(model: nn.Module, xg: torch.Tensor, select, rows: slice
                    ) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    logits = model(xg)
    check_logits(logits, len(xg))
    logp = F.log_softmax(logits, dim=1)
    probs = logp.detach().exp()
    classes = select(probs, rows) if select is not None else None
    sel = logp if classes is None else logp.gather(1, classes)
    return sel, probs, classes


def _loop_chunks(sel: torch.Tensor, xg: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    n, M = sel.shape
    for m in range(M):
        (g,) = torch.autograd.grad(sel[:, m].sum(), xg, retain_graph=m < M - 1)
        # A view for contiguous inputs: no copy between autograd and the FI op (channels-last
        # gradients are copied into the logical C, H, W order).
        yield m, g.reshape(n, 1, -1)


def _batched_chunks(sel: torch.Tensor, xg: torch.Tensor, chunk: int) -> Iterator[tuple[int, torch.Tensor]]:
    n, M = sel.shape
    eye = torch.eye(M, dtype=sel.dtype, device=sel.device)
    for m0 in range(0, M, chunk):
        mc = min(chunk, M - m0)
        go = eye[m0:m0 + mc, None, :].expand(mc, n, M)
        (g,) = torch.autograd.grad(sel, xg, grad_outputs=go, is_grads_batched=True, retain_graph=m0 + mc < M)
        yield m0, g.reshape(mc, n, -1).transpose(0, 1).contiguous()


def _vmap_jacobian(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    def f(xi):
        logits = model(xi.unsqueeze(0))
        return F.log_softmax(logits, dim=1).squeeze(0)

    jac = torch.func.vmap(torch.func.jacrev(f))(x)  # [n, K, C, H, W]
    with torch.no_grad():
        logits = model(x)
    check_logits(logits, len(x))
    return jac.reshape(len(x), jac.shape[1], -1), torch.softmax(logits, 1)


def stream(model: nn.Module, x: torch.Tensor, plan: Plan,
           select: Optional[Callable[[torch.Tensor, slice], torch.Tensor]] = None) -> Iterator[SubBatch]:
    """Sub-batches of x with their probabilities and lazily computed Jacobian chunks.

    ``select(probs [n, K], rows) -> classes [n, M]`` picks the slots of the images x[rows]
    (default: all K classes).
    The caller runs this inside :func:`pyadv._model_mode.frozen_eval`.
    """
    for start in range(0, len(x), plan.sub_batch):
        rows = slice(start, min(len(x), start + plan.sub_batch))
        xs = x[rows].detach()
        if plan.strategy == "vmap":
            jac, probs = _vmap_jacobian(model, xs)
            classes = select(probs, rows) if select is not None else None
            if classes is not None:
                jac = jac.gather(1, classes[:, :, None].expand(-1, -1, jac.shape[2]))

            def chunks(jac=jac):
                for m0 in range(0, jac.shape[1], plan.chunk):
                    yield m0, jac[:, m0:m0 + plan.chunk]

            yield SubBatch(rows, probs, classes, chunks())
            continue
        fmt = torch.channels_last if plan.channels_last else torch.contiguous_format
        xg = xs.clone(memory_format=fmt).requires_grad_(True)
        sel, probs, classes = _slot_log_probs(model, xg, select, rows)
        chunks = _loop_chunks(sel, xg) if plan.strategy == "loop" else _batched_chunks(sel, xg, plan.chunk)
        yield SubBatch(rows, probs, classes, chunks)
