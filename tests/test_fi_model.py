"""FI on models against brute force: autograd Jacobians and the formula of eq. (1)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pyadv import fi
from pyadv.reference import pixel_fi_reference


def small_model():
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.Tanh(), nn.Flatten(),
                      nn.Dropout(0.5), nn.Linear(4 * 8 * 8, 5)).double()
    m[1].running_mean.normal_()
    m[1].running_var.uniform_(0.5, 2)
    return m


def brute_force_fi(model, x, t):
    """Per image: the full Jacobian of log-softmax by autograd, then eq. (1) pixel by pixel
    with the 1x1 metric G_i = sum_k P_k J_ki^2 and its pseudo-inverse."""
    model.eval()
    out = []
    for b in range(len(x)):
        f = lambda z: F.log_softmax(model(z[None]), 1)[0]
        J = torch.autograd.functional.jacobian(f, x[b]).reshape(-1, x[b].numel())  # [K, P]
        P = f(x[b]).exp().detach()
        G = (P[:, None] * J**2).sum(0)
        g = J[t[b]]
        out.append(torch.where(G > 0, g**2 * torch.linalg.pinv(G[:, None, None])[:, 0, 0], torch.zeros_like(G)))
    return torch.stack(out).view_as(x)


def test_pixel_fi_matches_brute_force_autograd():
    model = small_model()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    y = torch.tensor([0, 3, 4])
    got = fi.pixel_fi(model, x, y)
    torch.testing.assert_close(got, brute_force_fi(model, x, y), rtol=1e-10, atol=1e-12)
    target = torch.tensor([1, 1, 2])
    torch.testing.assert_close(fi.pixel_fi(model, x, y, target=target), brute_force_fi(model, x, target),
                               rtol=1e-10, atol=1e-12)


def test_sa_dnn_convention_uses_the_guards():
    model = small_model()
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    y = torch.tensor([1, 2])
    jac, probs = fi.log_prob_jacobian(model, x)
    expect = pixel_fi_reference(jac, probs, y, 1e-3, 1e-3).view_as(x)
    torch.testing.assert_close(fi.pixel_fi(model, x, y, convention="sa_dnn", chunk_classes=2), expect)


def test_model_state_restored_and_input_untouched():
    model = small_model().train()
    model[1].eval()  # a deliberately mixed mode must survive
    model[5].weight.requires_grad_(False)
    x = torch.rand(2, 1, 8, 8, dtype=torch.float64)
    x0 = x.clone()
    fi.pixel_fi(model, x, torch.tensor([0, 1]))
    assert [m.training for m in model.modules()] == [True, True, False, True, True, True, True]
    assert [p.requires_grad for p in model.parameters()] == [True, True, True, True, False, True]
    assert all(p.grad is None for p in model.parameters())
    assert torch.equal(x, x0)


def test_real_model_exact_fi_is_bounded(digits_cnn):
    from pyadv.data import digits

    x, y = digits("test", 28)
    x, y = x[:16], y[:16]
    maps = fi.pixel_fi(digits_cnn, x, y)
    with torch.no_grad():
        p = torch.softmax(digits_cnn(x), 1).gather(1, y[:, None]).squeeze(1)
    bound = ((1 - p) / p).view(-1, 1, 1, 1)
    assert torch.all(maps <= bound * (1 + 1e-3) + 1e-7)


@pytest.mark.parametrize("kw,exc,match", [
    (dict(convention="svd"), ValueError, "convention must be one of"),
    (dict(chunk_classes=0), ValueError, "chunk_classes must be an int >= 1"),
    (dict(target=7), ValueError, r"target must hold classes in \[0, 5\)"),
])
def test_bad_arguments(kw, exc, match):
    with pytest.raises(exc, match=match):
        fi.pixel_fi(small_model(), torch.rand(2, 1, 8, 8, dtype=torch.float64), torch.tensor([0, 1]), **kw)


def test_nan_image_rejected():
    x = torch.rand(1, 1, 8, 8, dtype=torch.float64)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="x holds NaN or Inf"):
        fi.pixel_fi(small_model(), x, torch.tensor([0]))
