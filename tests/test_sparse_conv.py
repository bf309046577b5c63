"""The incremental conv stage op against its dense reference (F.conv2d of the rebuilt change),
on every CPU instruction set and under the emulator, its bad-input errors; the incremental
forward pass (pyadv.attacks._incremental) against the models it follows, and FIPSO through it."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cuda_harness import sparse_conv_args
from pyadv import _C, ops
from pyadv.attacks import FIPSO
from pyadv.attacks._incremental import SparseForward
from pyadv.attacks._runner import ModelRunner
from pyadv.models import LeNet5, Normalize, ResNet32, TwoConvBN
from pyadv.reference import sparse_conv_stage_reference

GEOMETRIES = [
    # H, W, Cin, Cout, kernel, padding, pool, relu: channel counts that fill 4, 2, 1 and no whole
    # vector of the CPU kernel's blocks, rectangular kernels, no pool, a pool of 3 with a remainder
    dict(H=14, W=14, Cin=32, Cout=64, k=(5, 5), pad=(2, 2), pool=2, relu=True),
    dict(H=9, W=11, Cin=3, Cout=20, k=(3, 5), pad=(1, 2), pool=2, relu=True),
    dict(H=8, W=8, Cin=1, Cout=50, k=(5, 5), pad=(0, 0), pool=1, relu=False),
    dict(H=10, W=7, Cin=4, Cout=16, k=(1, 1), pad=(0, 0), pool=3, relu=True),
    dict(H=6, W=6, Cin=2, Cout=7, k=(3, 3), pad=(1, 1), pool=2, relu=False),
    dict(H=12, W=12, Cin=8, Cout=96, k=(3, 3), pad=(1, 1), pool=2, relu=True),
]


def _run_both(args):
    delta, slots, outpos, base, weight, in_w, ph, pw, pool, relu = args
    got = ops.sparse_conv_stage(delta, slots, outpos, base, weight, in_w, (ph, pw), pool, relu)
    want = sparse_conv_stage_reference(*args)
    return got, want


@pytest.mark.parametrize("geo", GEOMETRIES, ids=lambda d: f"{d['Cin']}to{d['Cout']}k{d['k'][0]}x{d['k'][1]}p{d['pool']}")
@pytest.mark.parametrize("N", [1, 6])
def test_matches_reference_float64(isa, geo, N):
    g = torch.Generator().manual_seed(N)
    got, want = _run_both(sparse_conv_args(g, G=3, N=N, **geo))
    torch.testing.assert_close(got, want, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("geo", GEOMETRIES[:3], ids=["5x5", "rect", "nopool"])
def test_matches_reference_float32_and_emulator(isa, geo):
    g = torch.Generator().manual_seed(3)
    args = sparse_conv_args(g, G=2, N=9, dtype=torch.float32, **geo)
    got, want = _run_both(args)
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-5)
    emulated = _C.emulated.sparse_conv_stage(*args)
    torch.testing.assert_close(emulated, want, atol=2e-4, rtol=1e-5)


def test_edge_cases():
    g = torch.Generator().manual_seed(0)
    args = sparse_conv_args(g, G=3, N=5, H=6, W=6, Cin=2, Cout=16, density=0.0)
    got, want = _run_both(args)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    assert (got[:, :, -1] == 0).all()  # the padding row
    # no changed position anywhere: every candidate is the base's pooled output
    delta, slots = args[0], args[1]
    slots.fill_(-1)
    first = ops.sparse_conv_stage(delta[:, :, :0], slots, args[2], args[3], args[4], args[5], (1, 1), 2, True)
    assert (first == first[:, :1]).all()
    # negative activations and relu: the pool keeps 0, never a negative value
    args = sparse_conv_args(g, G=1, N=4, H=4, W=4, Cin=1, Cout=16, relu=True)
    args[3] -= 100.0
    got, want = _run_both(args)
    torch.testing.assert_close(got, want)
    assert (got[:, :, :-1] == 0).all()


def test_bad_input_names_the_argument():
    g = torch.Generator().manual_seed(0)
    delta, slots, outpos, base, weight, in_w, ph, pw, pool, relu = sparse_conv_args(
        g, G=2, N=3, H=6, W=6, Cin=2, Cout=16)
    op = torch.ops.pyadv.sparse_conv_stage
    with pytest.raises(ValueError, match="delta must be"):
        op(delta[0], slots, outpos, base, weight, in_w, ph, pw, pool, relu)
    with pytest.raises(ValueError, match="weight must be"):
        op(delta, slots, outpos, base, weight[:, :, :1], in_w, ph, pw, pool, relu)
    with pytest.raises(ValueError, match="slots must hold -1 or indices"):
        op(delta, slots.clone().fill_(99), outpos, base, weight, in_w, ph, pw, pool, relu)
    with pytest.raises(ValueError, match="outpos must hold -1 or indices"):
        op(delta, slots, outpos.clone().fill_(9), base, weight, in_w, ph, pw, pool, relu)
    with pytest.raises(TypeError, match="slots must be int32"):
        op(delta, slots.long(), outpos, base, weight, in_w, ph, pw, pool, relu)
    with pytest.raises(ValueError, match="base must be"):
        op(delta, slots, outpos, base[:, 1:], weight, in_w, ph, pw, pool, relu)
    with pytest.raises(TypeError, match="weight must have delta's dtype"):
        op(delta, slots, outpos, base, weight.float(), in_w, ph, pw, pool, relu)
    with pytest.raises(ValueError, match="pool"):
        op(delta, slots, outpos, base, weight, in_w, ph, pw, 0, relu)
    with pytest.raises(ValueError, match="slots must be"):
        op(delta, slots, outpos, base, weight, 5, ph, pw, pool, relu)


def test_opcheck():
    g = torch.Generator().manual_seed(0)
    args = sparse_conv_args(g, G=2, N=3, H=6, W=6, Cin=2, Cout=16, dtype=torch.float32)
    torch.library.opcheck(torch.ops.pyadv.sparse_conv_stage.default, tuple(args))


# --- the incremental forward pass -----------------------------------------------------------


def fuse(model: nn.Module) -> nn.Module:
    """torch.fx's conv + batch-norm folding, as the runner's search copy has it (its module
    imports torch.utils.mkldnn, whose torch.jit use torch itself deprecates)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from torch.fx.experimental.optimization import fuse as fx_fuse
    return fx_fuse(model)


class FunctionalChain(nn.Module):
    """Functional ReLU and flatten, a conv without its own nonlinearity, a pool of 4 made of
    two pools, and a two-layer head."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.c2 = nn.Conv2d(16, 20, (3, 1), padding=(1, 0))
        self.c3 = nn.Conv2d(20, 24, 3, padding=1, bias=False)
        self.p = nn.MaxPool2d(2)
        self.fc1, self.fc2 = nn.Linear(24 * 4 * 4, 30), nn.Linear(30, 5)

    def forward(self, x):
        x = self.p(F.relu(self.c1(x)))
        x = self.c2(x)
        x = self.p(self.p(torch.relu(self.c3(x))))
        return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))


def _randomised(model: nn.Module) -> nn.Module:
    """Batch-norm statistics away from the identity, so that folding them matters."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


MODELS = [
    ("twoconv", lambda: _randomised(TwoConvBN(1, 10, 28)), (1, 28, 28)),
    ("lenet", lambda: LeNet5().eval(), (1, 28, 28)),
    ("twoconv_rgb", lambda: _randomised(TwoConvBN(3, 10, 16)), (3, 16, 16)),
    ("functional", lambda: FunctionalChain().eval(), (3, 32, 32)),
    ("normalized_rgb", lambda: Normalize(_randomised(TwoConvBN(3, 10, 16)), [0.5, 0.4, 0.3], [0.2, 0.3, 0.25]).eval(),
     (3, 16, 16)),
]


@pytest.mark.parametrize("name,build,shape", MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("m", [1, 20])
def test_incremental_logits_match_the_model(name, build, shape, m):
    torch.manual_seed(0)
    model = build()
    net = SparseForward.of(fuse(model).eval())
    assert net is not None
    G, N = 3, 5
    x = torch.rand(G, *shape)
    x[0, :, :3] = 1.0  # saturated pixels: the clamp must count
    P = x[0].numel()
    idx = torch.stack([torch.randperm(P)[:m] for _ in range(G)])
    values = torch.randn(G, N, m)
    plan = net.prepare(x, idx)
    got = plan.logits(values)
    imgs = ops.sparse_perturb(x.flatten(1), idx, values).view(G * N, *shape)
    with torch.no_grad():
        want = model(imgs).view(G, N, -1)
    torch.testing.assert_close(got, want, atol=2e-4, rtol=1e-4)
    assert 0 < plan.work_share < 1
    sub = plan.select(torch.tensor([2, 0]))
    torch.testing.assert_close(sub.logits(values[[2, 0]]), want[[2, 0]], atol=2e-4, rtol=1e-4)


def test_normalized_model_gets_a_folded_search_copy():
    """Normalize is one fx node: the wrapped conv net still traces, its batch norm folds."""
    model = Normalize(_randomised(TwoConvBN(1, 10, 28)), [0.1307], [0.3081]).eval()
    runner = ModelRunner(model, torch.rand(2, 1, 28, 28), 2, num_classes=10)
    copy_ = runner._search_model()
    assert isinstance(copy_, torch.fx.GraphModule)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in copy_.modules())
    with pytest.raises(ValueError, match=r"x must be \[N, 1, H, W\]"):
        model(torch.rand(2, 3, 28, 28))


def test_incremental_float64_is_exact_to_rounding():
    model = _randomised(TwoConvBN(1, 10, 28)).double()
    net = SparseForward.of(fuse(model).eval())
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    idx = torch.stack([torch.randperm(784)[:10] for _ in range(2)])
    values = torch.randn(2, 4, 10, dtype=torch.float64)
    want = model(ops.sparse_perturb(x.flatten(1), idx, values).view(8, 1, 28, 28)).view(2, 4, -1)
    torch.testing.assert_close(net.prepare(x, idx).logits(values), want, atol=1e-10, rtol=1e-10)


class StridedConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3, stride=2)
        self.fc = nn.Linear(4 * 13 * 13, 3)

    def forward(self, x):
        return self.fc(self.c(x).flatten(1))


class AvgPooled(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.c(x), 1).flatten(1))


@pytest.mark.parametrize("model", [ResNet32(3, 10), StridedConv(), AvgPooled(), nn.Sequential(nn.Flatten(),
                                                                                              nn.Linear(784, 10))],
                         ids=["resnet", "strided", "avgpool", "mlp"])
def test_models_it_cannot_follow_give_none(model):
    model.eval()
    try:
        traced = fuse(model).eval()
    except Exception:
        traced = model
    assert SparseForward.of(traced) is None


def test_repeated_indices_give_no_plan():
    net = SparseForward.of(fuse(_randomised(TwoConvBN(1, 10, 8))).eval())
    assert net.prepare(torch.rand(1, 1, 8, 8), torch.tensor([[3, 3, 5]])) is None


@pytest.fixture(scope="module")
def digits_batch():
    torch.manual_seed(0)
    model = _randomised(TwoConvBN(1, 10, 28))
    x = torch.rand(4, 1, 28, 28) * 0.3
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def test_fipso_through_the_incremental_pass(digits_batch):
    """Same attack, incremental or dense: the same successes, fitness within float32 rounding
    of the trajectories, the same query accounting; the result says which path ran."""
    model, x, y = digits_batch
    opts = dict(m=12, pixels="gradient", n_particles=24, iters=15, seed=3)
    inc = FIPSO(model, incremental=True, **opts)(x, y)
    dense = FIPSO(model, incremental=False, **opts)(x, y)
    assert inc.success.tolist() == dense.success.tolist()
    torch.testing.assert_close(inc.extras["fitness"], dense.extras["fitness"], atol=1e-3, rtol=1e-3)
    assert inc.queries.tolist() == dense.queries.tolist()
    assert inc.profile["incremental"] and not dense.profile["incremental"]
    # the default decides by the estimated work: 12 pixels of 784 pay
    auto = FIPSO(model, **opts)(x, y)
    assert auto.profile["incremental"]
    # every pixel changed: a dense forward is cheaper, the default renders
    full = FIPSO(model, **{**opts, "m": 784, "iters": 2})(x[:1], y[:1])
    assert not full.profile["incremental"]


def test_incremental_option_is_validated():
    with pytest.raises(ValueError, match="incremental"):
        FIPSO(nn.Linear(2, 2), incremental="yes")


def test_reduced_precision_search_takes_the_float32_incremental_pass(digits_batch):
    model, x, y = digits_batch
    r = FIPSO(model, m=12, pixels="gradient", n_particles=24, iters=5, precision="bf16")(x[:2], y[:2])
    assert r.profile["incremental"] and r.precision["search"] == "bf16"
