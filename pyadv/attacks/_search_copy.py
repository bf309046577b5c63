"""Rewrites of the runner's search copy that keep its function and shorten its passes on a CPU.

**One-channel convolutions** (:func:`use_input_grad_convs`): oneDNN's backward-data pass into
a single input channel (the first layer of every grey-scale net) is several times slower than
its forward on a CPU; for the digits CNN it was the largest single op of a forward-and-backward
step in the torch profiler. The same gradient is a product of the output gradient
[N*HW, C_out] with the weights [C_out, k*k] followed by a col2im. With two or more input
channels oneDNN's own pass was faster at three of the four shapes tried (ResNet-32's first
convolution among them), so those convolutions are left alone. What this and the next
rewrite gained per step: the gradient attacks' benchmarks (README).

The runner's search copy uses :class:`InputGradConv2d` in place of such convolutions on the CPU;
the copy only ever differentiates with respect to its input, so the weights get no gradient.

**ReLU before max-pooling** (:func:`pool_before_relu`): the two commute (ReLU is monotone), so
relu(maxpool(x)) is maxpool(relu(x)) exactly, values and gradients (the gradient reaches the
same window maximum, or nothing where the maximum is not positive), with the ReLU and its
backward on a quarter of the elements behind a 2x2 pool.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _InputGradConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation):
        ctx.save_for_backward(weight)
        ctx.geometry = (x.shape[-2:], stride, padding, dilation, x.dtype)
        return F.conv2d(x, weight, bias, stride, padding, dilation)

    @staticmethod
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        (h, w), stride, padding, dilation, dtype = ctx.geometry
        n, c_out, h_out, w_out = grad_out.shape
        kh, kw = weight.shape[2:]
        # [N, HW, C_out] is a view of a channels-last gradient; the product is [N, k*k, HW]
        g = grad_out.permute(0, 2, 3, 1).reshape(n, h_out * w_out, c_out)
        cols = torch.matmul(weight.reshape(c_out, kh * kw).t().to(g.dtype), g.transpose(1, 2))
        cols = cols.view(n, kh, kw, h_out, w_out)
        # col2im as k*k shifted adds into the padded input (F.fold's general loop was slower)
        (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
        grad_x = cols.new_zeros(n, h + 2 * ph, w + 2 * pw)
        for dy in range(kh):
            for dx in range(kw):
                grad_x[:, dy * dh:dy * dh + (h_out - 1) * sh + 1:sh, dx * dw:dx * dw + (w_out - 1) * sw + 1:sw] += \
                    cols[:, dy, dx]
        return grad_x[:, None, ph:ph + h, pw:pw + w].to(dtype), None, None, None, None, None


class InputGradConv2d(nn.Conv2d):
    """A Conv2d (zero padding, one group) whose input gradient takes :class:`_InputGradConv`'s
    path; still a Conv2d to everything that inspects it (the incremental pass reads its weights)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _InputGradConv.apply(x, self.weight, self.bias, self.stride, self.padding, self.dilation)

    @classmethod
    def of(cls, conv: nn.Conv2d) -> "InputGradConv2d":
        if not qualifies(conv):
            raise ValueError(f"only a one-channel Conv2d with zero padding and one group qualifies, got {conv}")
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                  groups=1, bias=conv.bias is not None, device=conv.weight.device, dtype=conv.weight.dtype)
        new.weight, new.bias = conv.weight, conv.bias
        return new.train(conv.training)


def qualifies(m: nn.Module) -> bool:
    """A plain one-channel convolution (an exact Conv2d, zero padding given as numbers)."""
    return (type(m) is nn.Conv2d and m.in_channels == 1 and m.groups == 1 and m.padding_mode == "zeros"
            and not isinstance(m.padding, str))


def use_input_grad_convs(model: nn.Module) -> int:
    """Replaces, in place, every qualifying convolution of ``model`` (a private copy) and stops
    gradients to every parameter; returns how many were replaced."""
    for p in model.parameters():
        p.requires_grad_(False)
    found = [(name, m) for name, m in model.named_modules() if qualifies(m)]
    for name, m in found:
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, InputGradConv2d.of(m))
    return len(found)


def pool_before_relu(gm: torch.fx.GraphModule) -> int:
    """Swaps, in place, every ReLU module whose only user is a max-pooling module into the
    pool's place after it; returns how many were swapped."""
    swapped = 0
    for relu in list(gm.graph.nodes):
        pool = next(iter(relu.users), None)
        if not (_is(gm, relu, nn.ReLU) and len(relu.users) == 1 and _is(gm, pool, nn.MaxPool2d)
                and len(pool.args) == 1 and not pool.kwargs and pool.args[0] is relu and len(relu.args) == 1):
            continue
        source = relu.args[0]
        pool.replace_all_uses_with(relu)  # the pool's users now read the ReLU ...
        pool.args = (source,)             # ... which reads the pool, which reads the ReLU's input
        relu.args = (pool,)
        relu.prepend(pool)                # keep the graph in topological order
        swapped += 1
    if swapped:
        gm.graph.lint()
        gm.recompile()
    return swapped


def _is(gm: torch.fx.GraphModule, node, kind) -> bool:
    return node is not None and node.op == "call_module" and isinstance(gm.get_submodule(node.target), kind)
