import matplotlib.image as mpimg
import pytest
import torch

from pyadv.evaluate.figures import fi_maps_figure, manhattan_plot


def test_fi_maps_grey_and_rgb(tmp_path):
    g = torch.Generator().manual_seed(0)
    grey = fi_maps_figure(torch.rand(1, 8, 8, generator=g), torch.rand(10, 1, 8, 8, generator=g),
                          torch.softmax(torch.randn(10, generator=g), 0), 3, tmp_path / "grey.png")
    rgb = fi_maps_figure(torch.rand(3, 8, 8, generator=g), torch.rand(10, 3, 8, 8, generator=g),
                         torch.softmax(torch.randn(10, generator=g), 0), 3, tmp_path / "rgb.png", title="t")
    a, b = mpimg.imread(grey), mpimg.imread(rgb)
    assert a.shape[1] == b.shape[1] and b.shape[0] > 2 * a.shape[0]  # one row per channel
    # The maps are drawn: the figure is not blank.
    assert a[..., :3].std() > 0.05


def test_fi_maps_class_names_checked(tmp_path):
    with pytest.raises(ValueError, match="class_names must have 10 entries"):
        fi_maps_figure(torch.rand(1, 8, 8), torch.rand(10, 1, 8, 8), torch.full((10,), 0.1), 0,
                       tmp_path / "x.png", class_names=["a"])


def test_manhattan_plot(tmp_path):
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 10, (200,), generator=g)
    values = torch.rand(200, generator=g) ** 4
    values[0] = 0.0  # a zero on a log axis must not break the plot
    path = manhattan_plot(values, labels, tmp_path / "m.png", threshold=0.2, title="FI")
    img = mpimg.imread(path)
    assert img.shape[0] > 200 and img.shape[1] > 600
    with pytest.raises(ValueError, match="same length"):
        manhattan_plot(values, labels[:5], tmp_path / "bad.png")
