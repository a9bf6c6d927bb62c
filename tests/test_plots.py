"""Figures: exact pixel sizes, non-empty PNGs, and the filter grid's layout and scaling."""

import struct

import numpy as np
import pytest

from saelab.figures import plots


def png_size(path):
    """(width, height) from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_grid_shape_is_near_square():
    assert [plots.grid_shape(n) for n in (1, 2, 25, 26, 100, 196, 200)] == [
        (1, 1), (1, 2), (5, 5), (5, 6), (10, 10), (14, 14), (14, 15)]


def test_filter_grid_layout_and_per_tile_scaling():
    rng = np.random.default_rng(0)
    W1 = rng.standard_normal((6, 12)) * np.arange(1, 7)[:, None]   # tiles of very different scale
    image = plots.filter_grid(W1, (3, 4))
    assert image.shape == (2 * 3 + 3, 3 * 4 + 4)                     # 2 rows x 3 cols, 1-px borders
    centred = W1 - W1.mean()
    for j in range(6):
        r, c = divmod(j, 3)
        tile = image[1 + r * 4: 1 + r * 4 + 3, 1 + c * 5: 1 + c * 5 + 4]
        assert np.abs(tile).max() == pytest.approx(1.0)             # each tile uses the full range
        np.testing.assert_allclose(tile, centred[j].reshape(3, 4) / np.abs(centred[j]).max())
    assert (image[0, :] == -1).all() and (image[:, 0] == -1).all()   # separators
    assert (image[4, :] == -1).all() and (image[:, 5] == -1).all()


def test_filter_grid_rejects_a_wrong_tile_shape():
    with pytest.raises(ValueError, match="tile_shape"):
        plots.filter_grid(np.zeros((4, 10)), (3, 3))


@pytest.mark.parametrize("scale, expected", [(5, (16 * 5, 9 * 5)), (None, (800, 450))])
def test_save_filter_grid_pixel_size(tmp_path, scale, expected):
    path = plots.save_filter_grid(np.random.default_rng(1).standard_normal((6, 12)),
                                  tmp_path / "filters.png", (3, 4), scale=scale)
    assert png_size(path) == expected


def test_filter_grid_png_of_mnist_size(tmp_path):
    W1 = np.random.default_rng(2).standard_normal((196, 784))
    path = plots.save_filter_grid(W1, tmp_path / "f.png", (28, 28))
    side = 14 * 28 + 15
    assert png_size(path) == (2 * side, 2 * side)


def lbfgs_history():
    cost = list(100 * np.exp(-np.arange(31) / 5) + 1)
    return {"optimizer": "lbfgs", "iteration": list(range(31)), "cost": cost}


def adam_history():
    return {"optimizer": "adam", "epoch": [0, 1, 2, 3], "cost": [5.0, 3.0, 2.5, 2.2],
            "step_cost": list(np.linspace(5, 2, 12) + 0.1), "steps_per_epoch": 4}


@pytest.mark.parametrize("history", [lbfgs_history(), adam_history()])
def test_training_curve_png(tmp_path, history):
    path = plots.save_training_curve(history, tmp_path / "curve.png", size_pixels=(640, 400))
    assert png_size(path) == (640, 400)
    assert path.stat().st_size > 5000


def test_training_curve_rejects_non_finite_costs(tmp_path):
    with pytest.raises(ValueError, match="finite"):
        plots.save_training_curve({"optimizer": "lbfgs", "iteration": [0, 1], "cost": [1.0, np.nan]},
                                  tmp_path / "c.png")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("rho", [0.1, None])
def test_rho_hat_histogram_png(tmp_path, rho):
    rho_hat = np.random.default_rng(3).uniform(0.05, 0.15, size=196)
    path = plots.save_rho_hat_histogram(rho_hat, tmp_path / "h.png", rho=rho)
    assert png_size(path) == (800, 500)
    assert path.stat().st_size > 5000


def test_reconstruction_grid_puts_originals_above_reconstructions():
    X = np.random.default_rng(4).random((3, 4))
    image = plots.reconstruction_grid(X, 1 - X, (2, 2))
    assert image.shape == (2 * 2 + 3, 3 * 2 + 4)
    np.testing.assert_allclose(image[1:3, 1:3], X[0].reshape(2, 2))
    np.testing.assert_allclose(image[4:6, 1:3], 1 - X[0].reshape(2, 2))


def test_reconstruction_grid_scales_each_pair_by_its_original():
    X = np.array([[-2.0, 0.0, 2.0, 4.0]])
    image = plots.reconstruction_grid(X, X / 2, (2, 2), value_range=None)
    np.testing.assert_allclose(image[1:3, 1:3].ravel(), [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(image[4:6, 1:3].ravel(), [1 / 6, 1 / 3, 1 / 2, 2 / 3])


def test_reconstructions_png(tmp_path):
    X = np.random.default_rng(5).random((10, 784))
    path = plots.save_reconstructions(X, X ** 2, tmp_path / "r.png", (28, 28))
    assert png_size(path) == (90 * 10 + 140, 260)
    assert path.stat().st_size > 5000


def test_self_taught_figure_png(tmp_path):
    accuracies = {"UFLDL test set": {"learned features": 0.983, "raw pixels": 0.962},
                  "MNIST test set, 0-4": {"learned features": 0.985, "raw pixels": 0.97}}
    confusion = np.array([[50, 1, 0], [2, 40, 3], [0, 0, 60]])
    path = plots.save_self_taught_figure(accuracies, confusion, tmp_path / "st.png",
                                         class_names=("0", "1", "2"), size_pixels=(900, 400))
    assert png_size(path) == (900, 400)
    assert path.stat().st_size > 5000


@pytest.mark.parametrize("accuracies, confusion, message", [
    ({}, [[1]], "accuracies: expected a non-empty dict"),
    ({"a": {"f": 0.9, "p": 0.8}, "b": {"f": 0.9}}, [[1]], r"accuracies\['b'\]: expected the classifiers"),
    ({"a": {"f": 1.5}}, [[1]], "accuracies in \\[0, 1\\]"),
    ({"a": {"f": 0.5}}, [[1, 2]], "confusion: expected a square array"),
    ({"a": {"f": 0.5}}, [[0.5]], "confusion: expected a square array of non-negative integer"),
])
def test_self_taught_figure_rejects_bad_input(tmp_path, accuracies, confusion, message):
    with pytest.raises(ValueError, match=message):
        plots.save_self_taught_figure(accuracies, np.array(confusion), tmp_path / "st.png")
    assert list(tmp_path.iterdir()) == []


# Issue 20: the tile-shape check and the drawing agree (floats and negatives were accepted).
@pytest.mark.parametrize("tile_shape, error, match", [
    ((2.0, 2.0), TypeError, "tile_shape: expected .*two integers"),
    ((-2, -2), ValueError, "tile_shape: expected a height and a width >= 1"),
    ((2, 3), ValueError, r"tile_shape: \(2, 3\) has 6 pixels, but W1 has 4 columns"),
    ((4,), TypeError, "tile_shape: expected"),
    ("22", TypeError, "tile_shape: expected"),
])
def test_save_filter_grid_refuses_a_bad_tile_shape_by_name(tmp_path, tile_shape, error, match):
    W1 = np.random.default_rng(0).standard_normal((3, 4))
    with pytest.raises(error, match=match):
        plots.save_filter_grid(W1, tmp_path / "f.png", tile_shape)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path, scale, match", [("", None, "path: expected a file path"),
                                                 (None, None, "path: expected a file path"),
                                                 ("f.png", 0, "scale: expected None or an integer"),
                                                 ("f.png", 2.5, "scale: expected None or an integer")])
def test_save_filter_grid_refuses_a_bad_path_or_scale(tmp_path, monkeypatch, path, scale, match):
    monkeypatch.chdir(tmp_path)
    with pytest.raises((TypeError, ValueError), match=match):
        plots.save_filter_grid(np.eye(4), path, (2, 2), scale=scale)
    assert list(tmp_path.iterdir()) == []
