"""The obfuscated-gradient defenses (pyadv.defenses) and the wrappers that break them (BPDA, EoT),
paper 003 / Athalye et al. 2018. Fixed seeds throughout; the success figures the tests hold are
in the note of the issue."""
import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pyadv.attacks import PGD
from pyadv.defenses import BPDA, EoT, JPEGCompression, RandomResizePad, StochasticActivationPruning, Thermometer


def test_thermometer_is_exactly_the_l_level_encoding():
    t = Thermometer(10)
    x = torch.rand(3, 2, 4, 5, generator=torch.Generator().manual_seed(0))
    x[0, 0, 0, 0] = 0.66
    out = t(x)
    assert out.shape == (3, 20, 4, 5)
    ref = torch.stack([torch.stack([(x[:, c] > k / 10).float() for k in range(1, 11)], 1) for c in range(2)], 1)
    assert torch.equal(out, ref.reshape(3, 20, 4, 5))
    assert out[0, :10, 0, 0].tolist() == [1.0] * 6 + [0.0] * 4  # the notes' 1111110000
    # the relaxation: tau is the relaxation rounded down, off the thresholds
    g = t.relaxation(x)
    assert torch.equal(torch.floor(g), out)
    assert ((g > 0) & (g < 1)).any()  # and it is not the encoding itself
    xg = x.clone().requires_grad_(True)
    assert not t(xg).requires_grad  # shattered: no gradient at all
    with pytest.raises(ValueError, match="levels"):
        Thermometer(1)


@pytest.fixture(scope="module")
def thermometer_model():
    """A digits (8x8) MLP trained on 16-level thermometer-encoded input."""
    from pyadv.data import digits

    torch.manual_seed(0)
    xtr, ytr = digits("train", 8)
    net = nn.Sequential(Thermometer(16), nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(30):
        perm = torch.randperm(len(xtr), generator=g)
        for i in range(0, len(xtr), 64):
            b = perm[i:i + 64]
            loss = F.cross_entropy(net(xtr[b]), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def test_bpda_breaks_thermometer_encoding(thermometer_model):
    from pyadv.data import digits

    x, y = digits("test", 8)
    with torch.no_grad():
        assert (thermometer_model(x).argmax(1) == y).float().mean() > 0.95
    x, y = x[:64], y[:64]
    plain = PGD(thermometer_model, eps=0.2, steps=20)(x, y)
    bpda = PGD(BPDA(thermometer_model, "0"), eps=0.2, steps=20)(x, y)
    with torch.no_grad():
        s_plain = (thermometer_model(plain.adv).argmax(1) != y).float().mean()
        s_bpda = (thermometer_model(bpda.adv).argmax(1) != y).float().mean()
    assert s_plain <= 0.1 and s_bpda >= 0.9, (s_plain, s_bpda)
    assert torch.equal(bpda.success, thermometer_model(bpda.adv).argmax(1) != y)


def test_bpda_forward_is_the_model_and_backward_the_stand_in():
    model = nn.Sequential(Thermometer(8), nn.Flatten(), nn.Linear(8 * 4, 3))
    x = torch.rand(5, 1, 2, 2, generator=torch.Generator().manual_seed(1), requires_grad=True)
    out = BPDA(model, "0")(x)
    assert torch.equal(out, model(x))
    (g,) = torch.autograd.grad(out[:, 1].sum(), x)
    relaxed = nn.Sequential(model[1], model[2])
    xr = x.detach().clone().requires_grad_(True)
    (ref,) = torch.autograd.grad(relaxed(model[0].relaxation(xr))[:, 1].sum(), xr)
    assert torch.allclose(g, ref)
    # an explicit identity stand-in for a shape-preserving layer (JPEG)
    jm = nn.Sequential(JPEGCompression(90), nn.Flatten(), nn.Linear(64, 2))
    xj = torch.rand(2, 1, 8, 8, requires_grad=True)
    (gj,) = torch.autograd.grad(BPDA(jm, "0")(xj).sum(), xj)
    assert torch.allclose(gj, jm[2].weight.sum(0).view(1, 1, 8, 8).expand(2, 1, 8, 8))


def test_bpda_bad_input():
    model = nn.Sequential(Thermometer(8), nn.Flatten(), nn.Linear(8, 2))
    with pytest.raises(ValueError, match="BPDA layer 'encoder' is not a module of the model"):
        BPDA(model, "encoder")
    with pytest.raises(ValueError, match="returns shape"):
        BPDA(model, "0", approximation=lambda x: x)(torch.rand(2, 1, 1, 1))
    with pytest.raises(TypeError, match="approximation must be callable"):
        BPDA(model, "0", approximation=3)
    with pytest.raises(TypeError, match="not traceable"):
        torch.fx.symbolic_trace(BPDA(model, "0"))


def test_random_resize_pad_seeds_and_shapes():
    x = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    a, b, c = RandomResizePad(28, seed=1), RandomResizePad(28, seed=1), RandomResizePad(28, seed=2)
    ya, yb, yc = a(x), b(x), c(x)
    assert ya.shape == (6, 1, 31, 31)
    assert torch.equal(ya, yb) and not torch.equal(ya, yc)
    assert not torch.equal(a(x), ya)  # the next call draws anew
    a.reseed()
    assert torch.equal(a(x), ya)
    # each image is its resized self, placed somewhere, zeros around
    sizes = (ya[:, 0] != 0).any(1).sum(1)
    assert ((sizes >= 1) & (sizes <= 31)).all()
    with pytest.raises(ValueError, match=r"expects \[N, C, 28, 28\]"):
        a(torch.rand(1, 1, 32, 32))


def test_sap_keeps_each_activation_in_expectation_and_is_seeded():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 40), nn.ReLU())
    x = torch.randn(3, 6)
    sap = StochasticActivationPruning(model, fraction=0.5, seed=3)
    with torch.no_grad():
        clean = model(x)
        draws = torch.stack([sap(x) for _ in range(3000)])
    assert ((draws == 0) | (draws > 0)).all()
    assert (draws == 0).float().mean() > 0.2  # it prunes
    assert torch.allclose(draws.mean(0), clean, rtol=0.1, atol=0.05)
    s1, s2 = StochasticActivationPruning(model, seed=5), StochasticActivationPruning(model, seed=5)
    assert torch.equal(s1(x), s2(x))
    with pytest.raises(ValueError, match="no nn.ReLU"):
        StochasticActivationPruning(nn.Linear(2, 2))


def test_jpeg_is_pillows_round_trip():
    from PIL import Image

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    out = JPEGCompression(60)(x)
    arr = (x[1] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=60)
    ref = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).astype(np.float32) / 255
    assert np.allclose(out[1].permute(1, 2, 0).numpy(), ref)
    with pytest.raises(ValueError, match="quality"):
        JPEGCompression(0)


def test_eot_averages_probabilities_over_draws():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    x = torch.rand(2, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    shifts = [0.1, -0.2, 0.3]

    def transform(v, gen):  # deterministic draws, to check the average by hand
        return torch.cat([v[i * 2:(i + 1) * 2] + s for i, s in enumerate(shifts)])

    e = EoT(model, transform, samples=3)
    ref = torch.stack([torch.softmax(model(x + s), 1) for s in shifts]).mean(0)
    assert torch.allclose(torch.softmax(e(x), 1), ref, atol=1e-6)
    with pytest.raises(ValueError, match="EoT samples must be an int >= 1"):
        EoT(model, samples=0)
    with pytest.raises(ValueError, match="one image per input"):
        EoT(model, lambda v, g: v[:1], samples=2)(x)


@pytest.mark.parametrize("defense", ["resize_pad", "sap"])
def test_eot_pgd_beats_pgd_against_random_defenses(digits_cnn, defense):
    from pyadv.data import digits

    x, y = digits("test", 28)
    x, y = x[:32], y[:32]

    def defended(seed):
        if defense == "resize_pad":
            return nn.Sequential(RandomResizePad(28, seed=seed), digits_cnn)
        return StochasticActivationPruning(digits_cnn, fraction=0.5, seed=seed)

    judge = EoT(defended(99), samples=16, seed=5)  # success in expectation, on draws neither attack saw
    # a fixed plan: the runner's chunk measurement would cost more than these small attacks
    fixed = dict(eps=0.06, steps=10, alpha=0.0075, chunk_size=32, search_copy=False)
    plain = PGD(defended(0), **fixed)(x, y)
    eot = PGD(EoT(defended(0), samples=8), **fixed)(x, y)
    with torch.no_grad():
        s_plain = (judge(plain.adv).argmax(1) != y).float().mean()
        s_eot = (judge(eot.adv).argmax(1) != y).float().mean()
    assert s_eot > s_plain, (s_plain, s_eot)


def test_wrappers_compose():
    from pyadv.data import digits

    x, y = digits("test", 8)
    net = nn.Sequential(Thermometer(8), nn.Flatten(), nn.Linear(64 * 8, 10))
    r = PGD(EoT(BPDA(net, "0"), lambda v, g: (v + 0.02 * torch.randn(v.shape, generator=g)).clamp(0, 1),
                samples=2), eps=0.1, steps=2)(x[:4], y[:4])
    assert r.adv.shape == x[:4].shape and (r.gradients > 0).all()
