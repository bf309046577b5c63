"""The runner's search-copy rewrites: a one-channel convolution's input gradient through a matrix
product and col2im, and ReLU moved after max-pooling. Both must keep the function exactly:
values and input gradients against plain autograd of the untouched layers."""
import weakref

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pyadv.attacks._runner import ModelRunner
from pyadv.attacks._search_copy import InputGradConv2d, pool_before_relu, qualifies, use_input_grad_convs


def _input_grad(fn, x, cotangent):
    x = x.clone().requires_grad_(True)
    y = fn(x)
    return y.detach(), torch.autograd.grad(y, x, cotangent)[0]


GEOMETRIES = [  # out channels, kernel, stride, padding, dilation, input size
    (32, 5, 1, 2, 1, (28, 28)), (6, 5, 1, 0, 1, (32, 32)), (4, 3, 2, 1, 1, (9, 7)), (3, (3, 5), 1, (1, 2), 1, (8, 10)),
    (5, 3, 1, 2, 2, (11, 11)), (2, 4, 3, 0, 1, (13, 12)), (7, 1, 1, 0, 1, (5, 5)),
]


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=[str(g) for g in GEOMETRIES])
@pytest.mark.parametrize("bias", [True, False])
def test_input_grad_conv_matches_autograd(geometry, bias):
    c_out, k, stride, padding, dilation, size = geometry
    g = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(1, c_out, k, stride, padding, dilation, bias=bias).double()
    x = torch.rand(3, 1, *size, generator=g, dtype=torch.float64)
    mine = InputGradConv2d.of(conv)
    y_ref = conv(x)
    w = torch.randn(y_ref.shape, generator=g, dtype=torch.float64)
    y0, g0 = _input_grad(conv, x, w)
    y1, g1 = _input_grad(mine, x, w)
    assert torch.equal(y0, y1)
    assert torch.allclose(g0, g1, rtol=1e-12, atol=1e-12)
    # channels-last gradients (what the search copy feeds it) and float32
    conv32, mine32 = conv.float(), InputGradConv2d.of(conv.float())
    xc = x.float().contiguous(memory_format=torch.channels_last)
    wc = w.float().contiguous(memory_format=torch.channels_last)
    assert torch.allclose(_input_grad(conv32, xc, wc)[1], _input_grad(mine32, xc, wc)[1], rtol=1e-5, atol=1e-5)


def test_input_grad_conv_under_bf16_autocast_returns_the_input_dtype():
    conv = nn.Conv2d(1, 8, 3, padding=1)
    mine = InputGradConv2d.of(conv)
    x = torch.rand(4, 1, 10, 10)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y0, g0 = _input_grad(conv, x, torch.ones(4, 8, 10, 10))
        y1, g1 = _input_grad(mine, x, torch.ones(4, 8, 10, 10))
    assert g1.dtype == x.dtype and y1.dtype == y0.dtype
    assert torch.allclose(y0.float(), y1.float()) and torch.allclose(g0, g1, rtol=2e-2, atol=2e-2)


def test_only_plain_one_channel_convolutions_qualify():
    assert qualifies(nn.Conv2d(1, 4, 3))
    assert not qualifies(nn.Conv2d(2, 4, 3))
    assert not qualifies(nn.Conv2d(1, 4, 3, padding="same"))
    assert not qualifies(nn.Conv2d(1, 4, 3, padding_mode="reflect"))
    assert not qualifies(InputGradConv2d(1, 4, 3))
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
    assert use_input_grad_convs(net) == 1
    assert isinstance(net[0], InputGradConv2d) and type(net[2]) is nn.Conv2d
    assert not any(p.requires_grad for p in net.parameters())


class ReluPools(nn.Module):
    """ReLU -> pool pairs: one swappable, one whose ReLU has a second user, one pool after a
    functional relu, and an overlapping padded pool."""

    def __init__(self):
        super().__init__()
        self.c1, self.r1, self.p1 = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)
        self.c2, self.r2, self.p2 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, padding=1)
        self.r3, self.p3 = nn.ReLU(), nn.MaxPool2d(2)

    def forward(self, x):
        x = self.p1(self.r1(self.c1(x)))
        x = self.p2(self.r2(self.c2(x)))
        y = self.r3(x)
        return self.p3(y).flatten(1).sum(1, keepdim=True) + y.mean((1, 2, 3))[:, None] + \
            F.max_pool2d(F.relu(x), 2).flatten(1)


def test_pool_before_relu_keeps_values_and_gradients_exactly():
    torch.manual_seed(0)
    model = ReluPools().double().eval()
    gm = torch.fx.symbolic_trace(model)
    assert pool_before_relu(gm) == 2  # r1/p1 and r2/p2; r3 has two users, F.relu is no module
    order = [n.target for n in gm.graph.nodes if n.op == "call_module"]
    assert order.index("p1") < order.index("r1") and order.index("p2") < order.index("r2")
    assert order.index("r3") < order.index("p3")
    # ties: quantised inputs give equal maxima and all-negative windows
    x = (torch.randint(-3, 4, (5, 1, 12, 12)) / 3).double()
    for inp in (x, torch.rand(5, 1, 12, 12, dtype=torch.float64) - 0.5):
        w = torch.randn(5, model(inp).shape[1], dtype=torch.float64)
        y0, g0 = _input_grad(model, inp, w)
        y1, g1 = _input_grad(gm, inp, w)
        assert torch.equal(y0, y1) and torch.equal(g0, g1)


def test_runner_search_copy_uses_both_rewrites_and_keeps_the_gradient(digits_cnn, monkeypatch):
    from pyadv.attacks import _runner
    from pyadv.data import digits

    x, y = digits("test", 28)
    x, y = x[:8].contiguous(), y[:8]
    ce = lambda z, t: F.cross_entropy(z, t, reduction="none")  # noqa: E731
    run = ModelRunner(digits_cnn, x[:1], len(x), search_copy=True, chunk_size=len(x))
    copy = run._search_model()
    assert any(isinstance(m, InputGradConv2d) for m in copy.modules())
    pools = [n.target for n in copy.graph.nodes if n.op == "call_module"]
    assert pools.index("features.3") < pools.index("features.2")  # the first pool now before its ReLU
    assert not any(p.requires_grad for p in copy.parameters())
    assert all(p.requires_grad for p in digits_cnn.parameters())  # the user's model is untouched
    g_new = run.loss_grad(x, torch.arange(len(x)), ce, y)
    # the same copy without the rewrites (batch norm folded all the same: folding rounds
    # differently from the model as given, which can move a max-pool's choice)
    monkeypatch.setattr(_runner, "use_input_grad_convs", lambda m: 0)
    monkeypatch.setattr(_runner, "pool_before_relu", lambda m: 0)
    monkeypatch.setattr(_runner, "_copies", weakref.WeakKeyDictionary())  # not the copy made above
    old = ModelRunner(digits_cnn, x[:1], len(x), search_copy=True, chunk_size=len(x))
    assert not any(isinstance(m, InputGradConv2d) for m in old._search_model().modules())
    g_old = old.loss_grad(x, torch.arange(len(x)), ce, y)
    err = (g_new - g_old).flatten(1).norm(dim=1) / g_old.flatten(1).norm(dim=1)
    assert float(err.max()) < 1e-5, err


class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Linear(4 * 8 * 8, 3)
        self.scale = 1.0  # a plain attribute: the trace bakes it into the copy

    def forward(self, x):
        return self.head(torch.relu(self.bn(self.conv(x))).flatten(1)) * self.scale


def _copy_of(model, x):
    return ModelRunner(model, x, len(x), search_copy=True, chunk_size=len(x))._search_model()


def test_search_copy_is_reused_only_while_the_model_is_unchanged(monkeypatch):
    from pyadv.attacks import _runner

    monkeypatch.setattr(_runner, "_copies", weakref.WeakKeyDictionary())
    torch.manual_seed(0)
    model = _Scaled().eval()
    x = torch.rand(4, 1, 8, 8)

    def fresh(previous):
        c = _copy_of(model, x)
        assert c is not None and c is not previous
        torch.testing.assert_close(c(x.contiguous(memory_format=torch.channels_last)), model(x), rtol=1e-4, atol=1e-5)
        return c

    first = fresh(None)
    assert _copy_of(model, torch.rand(4, 1, 8, 8)) is first  # same model, other images: reused
    with torch.no_grad():
        model.conv.weight.data.mul_(2)  # through .data: autograd's version counter does not see it
    second = fresh(first)
    model.bn.train()
    model(torch.rand(16, 1, 8, 8))  # a training-mode forward moves the running statistics
    model.bn.eval()
    third = fresh(second)
    model.scale = 3.0  # no tensor changed, but the traced copy still multiplies by 1
    fourth = fresh(third)
    assert _copy_of(model, x) is fourth
    model.head = nn.Linear(4 * 8 * 8, 3)  # a module replaced
    fresh(fourth)


def test_search_copy_of_a_model_over_the_snapshot_limit_is_built_every_call(monkeypatch):
    from pyadv.attacks import _runner

    monkeypatch.setattr(_runner, "_copies", weakref.WeakKeyDictionary())
    monkeypatch.setattr(_runner, "_SNAPSHOT_MAX_BYTES", 0)
    model, x = _Scaled().eval(), torch.rand(2, 1, 8, 8)
    first = _copy_of(model, x)
    assert first is not None and _copy_of(model, x) is not first
