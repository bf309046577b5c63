"""digits-m: the RGB set (digits in colour photographs, MNIST-M style) and its pretrained ResNet-32."""
import pytest
import torch

from pyadv.data import digits, digits_m


def test_shape_range_split_and_seed():
    x, y = digits_m("train")
    xt, yt = digits_m("test")
    assert x.shape == (1442, 3, 32, 32) and xt.shape == (355, 3, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert torch.equal(y, digits("train", 8)[1]) and torch.equal(yt, digits("test", 8)[1])  # the digits' split
    assert torch.equal(x, digits_m("train")[0])  # the same images for the same seed
    assert not torch.equal(x, digits_m("train", seed=1)[0])
    counts = y.bincount()
    assert counts.min() >= 0.9 * counts.max()  # balanced as the digits
    assert (x.std(dim=(2, 3)) > 0.02).all()  # colour everywhere, not a grey digit on black
    with pytest.raises(ValueError, match="split"):
        digits_m("val")


@pytest.mark.slow
def test_pretrained_resnet32(cache_dir):
    from pyadv.models import pretrained
    from pyadv.models.pretrained import accuracy

    model = pretrained("digits-m-resnet32", progress=False)
    xt, yt = digits_m("test")
    acc = accuracy(model, xt, yt)
    assert acc >= 0.90 and abs(acc - model.pretrained_meta["test_accuracy"]) < 1e-9
