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


def test_nice_ticks():
    from pyadv.data.histogram_png import nice_ticks

    # steps of 1, 2 or 5 times a power of ten inside [lo, hi], about n of them
    assert nice_ticks(0, 43.2, 5) == [0, 10, 20, 30, 40]
    assert nice_ticks(0.13, 3.6, 6) == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert nice_ticks(0.2, 0.95, 4) == [0.2, 0.4, 0.6, 0.8]
    assert nice_ticks(1.0, 1.0) == [1.0]


def test_card_histogram_png():
    """The card's histogram: the bars of each series where its values are (the tallest bar of
    a series concentrated at one value is its colour), the canvas white elsewhere."""
    import numpy as np

    from pyadv.data.histogram_png import BOX, COLOURS, SIZE, histogram_png

    a = list(np.full(50, 0.25))
    b = list(np.linspace(0.6, 1.0, 20))
    img = np.asarray(histogram_png({"a": a, "b": b}, "PASS"))
    assert img.shape == (SIZE[1], SIZE[0], 3)
    L, T, R, B = BOX
    # a's 50 samples sit in one bin at x = 0.25 of [0.25, 1]: the bar at the left edge, full height
    col = img[B - 5, L + 3].astype(int)
    blue = np.array([int(COLOURS[0][j:j + 2], 16) for j in (1, 3, 5)])
    assert np.abs(col - (blue * 140 + 255 * 115) / 255).max() < 3  # a's colour over white, translucent
    assert (img[T + (B - T) // 2, (L + R) // 2] == 255).all()       # nothing between the two
    one = np.asarray(histogram_png({"one value": [0.5] * 3}, "x"))  # a single value still draws
    assert (one != 255).any(-1).sum() > 500


def test_card_png_writer_round_trips():
    """png_bytes writes a PNG that Pillow reads back pixel for pixel; bad shapes are refused."""
    import io

    import numpy as np
    import pytest
    from PIL import Image

    from pyadv.data.histogram_png import histogram_png, png_bytes

    rng = np.random.default_rng(0)
    for a in (rng.integers(0, 256, (7, 5, 3), dtype=np.uint8), np.asarray(histogram_png({"a": [0.1, 0.5]}, "x"))):
        back = Image.open(io.BytesIO(png_bytes(a)))
        assert back.mode == "RGB" and np.array_equal(np.asarray(back), a)
    with pytest.raises(ValueError, match="img must be RGB"):
        png_bytes(np.zeros((4, 4), dtype=np.uint8))
