"""The search in reduced precision (``precision=``), its float32 check and fallback, "auto",
and the compiled runner (``compile=``)."""
import warnings

import pytest
import torch
from torch import nn

import pyadv.attacks._compile as compile_mod
import pyadv.attacks._precision as precision_mod
from pyadv.attacks import PGD, SparseRS, available, create
from pyadv.attacks._losses import cross_entropy
from pyadv.attacks._runner import ModelRunner
from pyadv.data import digits

from attack_budgets import FAST


@pytest.fixture(scope="module")
def images():
    x, y = digits("test", 28)
    return x[:6].contiguous(), y[:6]


@pytest.mark.parametrize("name", available())
def test_bf16_successes_verify_in_float32(name, digits_cnn, images):
    x, y = images
    r = create(name, digits_cnn, precision="bf16", seed=1, **FAST.get(name, {}))(x, y)
    assert r.precision["asked"] == "bf16" and r.precision["search"] == "bf16"
    assert r.precision["model"] == "float32"
    with torch.no_grad():
        z = digits_cnn(r.adv)
    assert torch.equal(r.success, z.argmax(1) != y)  # every reported success holds in float32
    assert torch.allclose(r.probs, torch.softmax(z, 1), atol=1e-6)  # and the reported numbers are float32's
    assert r.precision["fallback"] == r.precision.get("failed_check", 0)


class TiedInBf16(nn.Module):
    """Two classes whose logits (1000 and 1000.5) bf16 rounds to the same value (spacing 4 at
    1000): float32 predicts class 1, the bf16 search sees a tie, and argmax picks class 0."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 2)
        with torch.no_grad():
            self.fc.weight.fill_(1e-4)
            self.fc.bias.copy_(torch.tensor([1000.0, 1000.5]))

    def forward(self, x):
        return self.fc(x.flatten(1))


def test_a_refuted_success_falls_back_to_float32(monkeypatch):
    model = TiedInBf16().eval()
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.ones(4, dtype=torch.long)
    # Without the band the bf16 search claims the tie as a success (the band would refuse it:
    # the probe's 0.5 / 1000 relative error is exactly the gap).
    monkeypatch.setattr(ModelRunner, "band_rel", property(lambda self: 0.0))
    atk = PGD(model, eps=0.01, steps=3, stop="first_success", precision="bf16")
    r = atk(x, y)
    assert r.extras["search_success"].all()          # the search claimed every image
    assert r.precision["failed_check"] == 4          # the check refuted every claim
    assert r.precision["fallback"] == 4 and r.precision["fallback_success"] == 0
    assert not r.success.any()
    # the float32 attack's own work is added: a bf16 run stops at its first (false) success
    fp32 = PGD(model, eps=0.01, steps=3, stop="first_success")(x, y)
    assert torch.equal(r.queries, fp32.queries + 2)  # 1 bf16 step + its check, then the float32 run
    assert torch.equal(r.adv, fp32.adv)


def test_the_band_keeps_the_search_from_claiming_a_tie():
    model = TiedInBf16().eval()
    x = torch.rand(4, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    y = torch.ones(4, dtype=torch.long)
    r = PGD(model, eps=0.01, steps=3, stop="first_success", precision="bf16")(x, y)
    assert r.precision["band"] > 0
    assert r.precision["search_successes"] == 0 and r.precision["fallback"] == 0


def test_float32_is_unchanged_by_the_precision_machinery(digits_cnn, images):
    x, y = images
    a = SparseRS(digits_cnn, k=4, n_queries=30)(x, y)
    b = SparseRS(digits_cnn, k=4, n_queries=30, precision="float32")(x, y)
    assert torch.equal(a.adv, b.adv) and a.precision["band"] == 0.0 and a.precision["search"] == "fp32"


def test_auto_picks_a_native_precision_or_float32(digits_cnn, images, monkeypatch):
    x, y = images
    r = PGD(digits_cnn, eps=0.1, steps=60, precision="auto")(x, y)  # 366 images: measured
    assert r.precision["asked"] == "auto"
    assert r.precision["search"] in ["fp32"] + precision_mod.native_precisions(x.device)
    monkeypatch.setattr("pyadv.attacks._runner.native_precisions", lambda device: [])
    r = PGD(digits_cnn, eps=0.1, steps=60, precision="auto", chunk_size=32)(x, y)
    assert r.precision["search"] == "fp32"


@pytest.mark.parametrize("value", ["fp32", "float32", torch.float32, "bf16", "bfloat16", torch.bfloat16, "fp16",
                                   "half", "auto"])
def test_precision_names(value):
    assert precision_mod.precision_name(value) in ("fp32", "bf16", "fp16", "auto")


def test_bad_precision_and_compile_options(monkeypatch):
    model = TiedInBf16()
    with pytest.raises(ValueError, match="precision='int8'"):
        PGD(model, precision="int8")
    with pytest.raises(ValueError, match="precision='bf16' is not allowed on meta"):
        precision_mod.check_precision("bf16", torch.device("meta"))
    with pytest.raises(ValueError, match="compile=1"):
        PGD(model, compile=1)
    with pytest.raises(ValueError, match="compile_backend='nope'"):
        PGD(model, compile=True, compile_backend="nope")
    monkeypatch.setattr("pyadv.attacks._base.compile_available", lambda: "no dynamo in this build")
    with pytest.raises(ValueError, match="compile=True is not allowed: False here: no dynamo"):
        PGD(model, compile=True)


def test_an_emulated_precision_warns_once(monkeypatch):
    monkeypatch.setattr(precision_mod, "native_precisions", lambda device: [])
    monkeypatch.setattr(precision_mod, "_warned", set())
    with pytest.warns(RuntimeWarning, match="emulates"):
        precision_mod.check_precision("fp16", torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        precision_mod.check_precision("fp16", torch.device("cpu"))


# --- compile --------------------------------------------------------------------------------

class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def test_compiled_runner_matches_eager_and_never_recompiles_as_the_batch_shrinks(monkeypatch):
    # as if the compiled model had measured twice as fast: every chunk of half the chunk size or more uses it
    monkeypatch.setattr(ModelRunner, "_compiled_ratio", lambda self, grad: 0.5)
    model = SmallCNN().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(40, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(2))
    eager = ModelRunner(model, x, 40, num_classes=3, chunk_size=16, search_copy=False)
    comp = ModelRunner(model, x, 40, num_classes=3, chunk_size=16, search_copy=False, compile="always",
                       compile_backend="aot_eager")
    for n in (40, 33, 16, 9, 5):  # full chunks, a padded last chunk (>= ratio x chunk), an eager one (below)
        rows = torch.arange(n)
        assert torch.allclose(comp.probs(x[:n], rows), eager.probs(x[:n], rows), atol=1e-6)
        g_c, z_c = comp.loss_grad(x[:n], rows, cross_entropy, y[:n], return_logits=True)
        g_e, z_e = eager.loss_grad(x[:n], rows, cross_entropy, y[:n], return_logits=True)
        assert torch.allclose(g_c, g_e, atol=1e-6) and torch.allclose(z_c, z_e, atol=1e-5)
    stats = comp.compile_stats
    assert stats["compilations"] == 2  # one inference graph, one with its backward: per chunk size, once
    assert stats["compile_s"] > 0 and stats["compiled_used"] == {"forward": True, "backward": True}
    assert torch.equal(comp.queries, eager.queries)


def test_a_compiled_model_is_used_only_where_it_measured_faster(monkeypatch):
    model = SmallCNN().eval()
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    ratios = iter([1.2, 0.5])  # forward: slower than eager; forward and backward: faster
    monkeypatch.setattr(ModelRunner, "_compiled_ratio", lambda self, grad: next(ratios))
    comp = ModelRunner(model, x, 16, num_classes=3, chunk_size=16, search_copy=False, compile="always",
                       compile_backend="aot_eager")
    comp.probs(x, torch.arange(16))
    comp.loss_grad(x, torch.arange(16), cross_entropy, torch.zeros(16, dtype=torch.long))
    stats = comp.compile_stats
    assert stats["compiled_used"] == {"forward": False, "backward": True}
    assert stats["compilations"] == 1  # only the graph that is used was compiled
    # and the measurement itself gives a verdict and compiles what it measures
    other = SmallCNN().eval()
    r = ModelRunner(other, x, 16, num_classes=3, chunk_size=16, search_copy=False, compile="always",
                    compile_backend="aot_eager")
    monkeypatch.undo()
    r.probs(x, torch.arange(16))
    assert r.compile_stats["compiled_used"]["forward"] in (True, False)
    assert r.compile_stats["compilations"] == 1 and r.compile_stats["compile_s"] > 0


def test_compiled_attack_gives_the_eager_result(digits8_cnn):
    x, y = digits("test", 8)
    x, y = x[:12].contiguous(), y[:12]
    a = SparseRS(digits8_cnn, k=3, n_queries=40)(x, y)
    b = SparseRS(digits8_cnn, k=3, n_queries=40, compile="always", compile_backend="aot_eager", chunk_size=8)(x, y)
    assert torch.equal(a.success, b.success) and torch.allclose(a.adv, b.adv)
    assert b.profile["compilations"] <= 1 and "compilations" not in a.profile


def test_compile_true_waits_for_a_long_enough_call(monkeypatch):
    model = SmallCNN().eval()
    x = torch.rand(4, 1, 8, 8)
    y = torch.zeros(4, dtype=torch.long)
    r = PGD(model, eps=0.1, steps=2, compile=True, compile_backend="aot_eager")(x, y)
    assert "compilations" not in r.profile  # 12 images: far from paying for a compilation
    assert not compile_mod.compile_pays(True, 1.0, model, "aot_eager")
    assert compile_mod.compile_pays(True, compile_mod.COMPILE_PAYS_AFTER_S, model, "aot_eager")
    assert compile_mod.compile_pays("always", None, model, "aot_eager")
    assert not compile_mod.compile_pays(False, 1e9, model, "aot_eager")


def test_auto_keeps_float32_where_an_attack_says_reduced_precision_harms_it(digits_cnn, images):
    from pyadv.attacks import FGS, JSMA, LBFGS

    x, y = images
    assert not LBFGS.auto_reduced and not JSMA.auto_reduced
    r = LBFGS(digits_cnn, search_steps=1, max_iter=3, precision="auto")(x[:2], y[:2])
    assert r.precision["asked"] == "auto" and r.precision["search"] == "fp32"
    # an attack that never claims a success never pays for measuring the band
    r = FGS(digits_cnn, eps=0.1, precision="bf16")(x, y)
    assert r.precision["search"] == "bf16" and r.precision["band"] is None


class Overflows(nn.Module):
    """Logits beyond fp16's range (65504) inside the model: finite in float32, inf in fp16."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 2)
        with torch.no_grad():
            self.fc.weight.fill_(1.0)
            self.fc.bias.fill_(0.0)

    def forward(self, x):
        return self.fc(x.flatten(1) * 1e4) / 1e4


def test_a_precision_that_overflows_the_model_is_a_clear_error():
    x = torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(0)) + 1.0
    y = torch.zeros(3, dtype=torch.long)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # fp16 is emulated on most CPUs
        with pytest.raises(ValueError, match="precision='fp16' is not allowed for this model"):
            PGD(Overflows().eval(), eps=0.1, steps=2, precision="fp16")(x.clamp(0, 1), y)
