"""The contract every registered attack keeps, checked for each name in the registry: a new
attack is covered the moment it is registered (FAST only keeps its budget small)."""
import pytest
import torch
from torch import nn

from pyadv.attacks import AttackResult, available, create
from pyadv.metrics import lp_norms

from attack_budgets import FAST


class SmallNet(nn.Module):
    """A conv net with batch norm (whose mode must come back) and 4 classes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 8 * 8, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.bn(self.conv(x))).flatten(1))


@pytest.fixture
def setup():
    model = SmallNet().train()
    model.fc.weight.requires_grad_(False)
    x = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        y = model.eval()(x).argmax(1)
    model.train()
    return model, x, y


def attack(name, model, **extra):
    return create(name, model, **{**FAST.get(name, {}), **extra})


def test_the_registry_lists_every_attack():
    assert {"fipso", "fgs", "fgv", "bim", "illc", "pgd", "apgd", "hotcold"} <= set(available())


@pytest.mark.parametrize("name", available())
def test_contract(name, setup, tmp_path):
    model, x, y = setup
    x0 = x.clone()
    modes = [m.training for m in model.modules()]
    grads = [p.requires_grad for p in model.parameters()]
    atk = attack(name, model, seed=3)
    r = atk(x, y)
    # x untouched, model as it was
    assert torch.equal(x, x0)
    assert [m.training for m in model.modules()] == modes
    assert [p.requires_grad for p in model.parameters()] == grads
    # the fields, their shapes and what they must equal
    B = len(x)
    assert r.adv.shape == x.shape and r.adv.dtype == x.dtype and r.adv.device == x.device
    assert r.adv.min() >= 0 and r.adv.max() <= 1
    for f in ("success", "pred", "prob_true", "prob_target", "queries", "gradients", "iterations", "l0", "l2", "linf"):
        assert getattr(r, f).shape == (B,), f
    assert r.probs.shape == (B, 4) and r.attack == name and r.seed == 3
    n = lp_norms(r.adv, x)
    for k in ("l0", "l2", "linf"):
        assert torch.allclose(getattr(r, k).double(), n[k].double()), k
    with torch.no_grad():
        pred = model.eval()(r.adv).argmax(1)
    model.train()
    assert torch.equal(r.pred, pred)
    assert (r.queries >= 1).all()
    # same seed, same result
    assert atk(x, y).equal(r)
    # saved and loaded, equal
    r.save(tmp_path / "r.safetensors")
    assert AttackResult.load(tmp_path / "r.safetensors").equal(r)


@pytest.mark.parametrize("name", available())
def test_targeted_and_quantized(name, setup):
    model, x, y = setup
    t = (y + 1) % 4
    r = attack(name, model, quantize=True)(x, y, target=t)
    k = r.adv * 255
    assert torch.allclose(k, k.round(), atol=1e-4)
    with torch.no_grad():
        pred = model.eval()(r.adv).argmax(1)
    assert torch.equal(r.pred, pred)
    assert torch.equal(r.success & (r.pred != t), torch.zeros_like(r.success))  # a success reached its target
    assert torch.equal(r.target, t)


@pytest.mark.parametrize("name", available())
def test_unknown_option_and_bad_target_are_errors(name, setup):
    model, x, y = setup
    with pytest.raises(ValueError, match="unknown option"):
        create(name, model, not_an_option=1)
    with pytest.raises(ValueError, match="target equals the label"):
        attack(name, model)(x, y, target=y)
