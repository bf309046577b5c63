"""pyadv._finite.finite_range, the input checks' one-pass finiteness test, against torch.isfinite."""
import pytest
import torch

from pyadv._finite import finite_range
from pyadv.fi._inputs import check_images


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), None])
@pytest.mark.parametrize("where", [0, 4097, -1])  # first, inside a later block of the reduction, last
def test_finite_range_agrees_with_isfinite(dtype, bad, where):
    t = torch.rand(3, 2, 50, 41).to(dtype) - 0.25
    if bad is not None:
        t.view(-1)[where] = bad
    span = finite_range(t)
    assert (span is not None) == bool(torch.isfinite(t).all())
    if span is not None:
        assert span == (float(t.min()), float(t.max()))


def test_check_images_names_non_finite_values_and_the_range():
    x = torch.rand(2, 1, 8, 8)
    x[1, 0, 7, 7] = float("inf")
    with pytest.raises(ValueError, match="x holds NaN or Inf"):
        check_images(x)
    with pytest.raises(ValueError, match=r"got values in \[-0.5, 1\]"):
        check_images(torch.tensor([-0.5, 1.0]).view(1, 1, 1, 2))
    check_images(torch.zeros(0, 1, 8, 8))  # empty: nothing to check
