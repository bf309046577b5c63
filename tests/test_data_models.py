import pytest
import torch

from pyadv.data import digits
from pyadv.models import LeNet5, Normalize, ResNet32, TwoConvBN, pretrained


def test_digits_split_is_fixed_and_disjoint():
    xa, ya = digits("all", 8)
    xtr, ytr = digits("train", 8)
    xte, yte = digits("test", 8)
    assert xa.shape == (1797, 1, 8, 8) and len(xtr) == 1442 and len(xte) == 355
    assert ya.bincount().tolist() == (ytr.bincount() + yte.bincount()).tolist()
    # Every fifth image of each class, in data-set order, is a test image.
    first_zeros = (ya == 0).nonzero().flatten()[:10]
    assert torch.equal(xte[yte == 0][0], xa[first_zeros[4]])
    assert torch.equal(xte[yte == 0][1], xa[first_zeros[9]])
    assert float(xa.min()) == 0.0 and float(xa.max()) == 1.0


def test_digits_28_is_bilinear_upsampling():
    x8, y8 = digits("test", 8)
    x28, y28 = digits("test", 28)
    assert x28.shape == (355, 1, 28, 28) and torch.equal(y8, y28)
    expect = torch.nn.functional.interpolate(x8, size=(28, 28), mode="bilinear", align_corners=False)
    torch.testing.assert_close(x28, expect)
    assert 0.0 <= float(x28.min()) and float(x28.max()) <= 1.0


@pytest.mark.parametrize("kw,exc,match", [(dict(split="val"), ValueError, "split must be one of"),
                                          (dict(size=32), ValueError, "size must be one of"),
                                          (dict(dtype=torch.int64), TypeError, "dtype must be a floating")])
def test_digits_bad_arguments(kw, exc, match):
    with pytest.raises(exc, match=match):
        digits(**kw)


@pytest.mark.parametrize("model,shape", [(LeNet5(), (2, 1, 28, 28)), (TwoConvBN(), (2, 1, 28, 28)),
                                         (ResNet32(in_channels=1), (2, 1, 28, 28)),
                                         (ResNet32(in_channels=3), (2, 3, 32, 32))])
def test_models_map_images_to_logits(model, shape):
    model.eval()
    assert model(torch.rand(shape)).shape == (2, 10)


def test_model_sizes():
    n = lambda m: sum(p.numel() for p in m.parameters())
    assert n(LeNet5()) == 431080  # Caffe's LeNet for MNIST
    convs = [m for m in ResNet32().modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == 32  # 31 3x3 convolutions + the final linear layer


def test_normalize_wrapper():
    inner = torch.nn.Identity()
    m = Normalize(inner, mean=[0.5, 0.25, 0.0], std=[0.5, 0.25, 2.0])
    x = torch.rand(2, 3, 4, 4)
    expect = (x - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.25, 2.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(m(x), expect)
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalize(inner, [0.0], [0.0])
    with pytest.raises(ValueError, match=r"x must be \[N, 3, H, W\]"):
        m(torch.rand(2, 1, 4, 4))


@pytest.mark.slow
def test_pretrained_digits_cnn_accuracy_and_cache(digits_cnn, cache_dir):
    from pyadv.models.pretrained import accuracy

    meta = digits_cnn.pretrained_meta
    assert meta["test_accuracy"] >= 0.97
    xte, yte = digits("test", 28)
    assert accuracy(digits_cnn, xte, yte) == pytest.approx(meta["test_accuracy"])
    assert (cache_dir / "digits-cnn.safetensors").exists() and (cache_dir / "digits-cnn.json").exists()
    again = pretrained("digits-cnn", progress=False)  # loaded from the cache, not retrained
    assert again.pretrained_meta == meta
    for a, b in zip(again.state_dict().values(), digits_cnn.state_dict().values()):
        assert torch.equal(a, b)
    assert not again.training


def test_pretrained_unknown_name():
    with pytest.raises(ValueError, match="unknown pretrained model 'imagenet'"):
        pretrained("imagenet")
