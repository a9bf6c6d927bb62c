"""The natural-image pipeline: whitening, sampling, normalization, ZCA."""

import os

import numpy as np
import pytest

from saelab.data import patches


def one_over_f_image(n, rng):
    """A synthetic natural-like image: random phases, amplitude 1/|f|."""
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.fftfreq(n)[None, :]
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0                                    # no division by zero at DC
    phases = np.exp(2j * np.pi * rng.uniform(size=(n, n)))
    return np.fft.ifft2(phases / f).real


def spectrum_slope(image, band=(0.02, 0.2), n_bins=8):
    """Slope of log mean power against log frequency, in log-spaced radial bins."""
    power = np.abs(np.fft.fft2(image)) ** 2
    f = np.hypot(np.fft.fftfreq(image.shape[0])[:, None], np.fft.fftfreq(image.shape[1])[None, :])
    edges = np.geomspace(band[0], band[1], n_bins + 1)
    centres, means = [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        ring = (f >= lo) & (f < hi)
        centres.append(np.sqrt(lo * hi))
        means.append(power[ring].mean())
    slope, _ = np.polyfit(np.log(centres), np.log(means), 1)
    return slope


def test_whitening_flattens_a_one_over_f_spectrum():
    image = one_over_f_image(128, np.random.default_rng(0))
    before = spectrum_slope(image)
    after = spectrum_slope(patches.whiten_image(image, cutoff=0.4))
    # Power of a 1/f image falls as f^-2; the filter's |f| factor makes it flat
    # (its roll-off exp(-2 (f/0.4)^4) bends it down by only 12% at f = 0.2).
    assert before == pytest.approx(-2.0, abs=0.05)
    assert abs(after) < 0.1


def test_whitened_images_share_one_scale_and_reach_the_variance():
    rng = np.random.default_rng(1)
    images = [one_over_f_image(64, rng), 3 * one_over_f_image(64, rng)]
    white = patches.whiten_images(images, cutoff=0.4, variance=0.1)
    values = np.concatenate([w.ravel() for w in white])
    assert values.var() == pytest.approx(0.1, rel=1e-12)
    # One factor for all images keeps their contrast ratio.
    raw = [patches.whiten_image(image, 0.4) for image in images]
    assert white[1].std() / white[0].std() == pytest.approx(raw[1].std() / raw[0].std(), rel=1e-12)


def position_image(height, width):
    """Pixel value = its own flat index, so a patch tells where it came from."""
    return np.arange(height * width, dtype=np.float64).reshape(height, width)


def test_patches_are_exact_slices_in_bounds_and_reproducible():
    images = [position_image(20, 30), position_image(15, 12) + 10_000]
    size = 5
    sampled = patches.sample_patches(images, 500, size, rng=3)
    assert sampled.shape == (500, size * size)
    for row in sampled:
        image = images[1] if row[0] >= 10_000 else images[0]
        top, left = divmod(int(row[0] - (10_000 if row[0] >= 10_000 else 0)), image.shape[1])
        assert top + size <= image.shape[0] and left + size <= image.shape[1]
        np.testing.assert_array_equal(row, image[top:top + size, left:left + size].ravel())
    np.testing.assert_array_equal(sampled, patches.sample_patches(images, 500, size, rng=3))
    assert not np.array_equal(sampled, patches.sample_patches(images, 500, size, rng=4))


def test_every_position_can_be_drawn():
    image = position_image(6, 7)
    sampled = patches.sample_patches([image], 5000, 3, rng=0)
    corners = set(sampled[:, 0].astype(int))
    assert corners == {r * 7 + c for r in range(4) for c in range(5)}


def test_normalization_lands_in_range_with_each_patch_mean_removed():
    rng = np.random.default_rng(2)
    raw = rng.normal(5.0, 2.0, size=(400, 64)) + rng.normal(size=(400, 1)) * 10
    out = patches.normalize_for_sigmoid(raw)
    assert out.min() >= 0.1 and out.max() <= 0.9
    # Without clipping the map is affine, so every patch's mean lands on 0.5.
    gentle = rng.uniform(-1, 1, size=(300, 16)) + rng.normal(size=(300, 1))
    centred = gentle - gentle.mean(axis=1, keepdims=True)
    assert np.abs(centred).max() < 3 * centred.std()          # no value is clipped
    np.testing.assert_allclose(patches.normalize_for_sigmoid(gentle).mean(axis=1), 0.5, atol=1e-12)


def test_normalization_with_a_given_limit_reuses_the_training_patches_scale():
    rng = np.random.default_rng(3)
    train = rng.normal(size=(500, 16))
    limit = patches.sigmoid_limit(train)
    assert limit == pytest.approx(3 * patches.remove_patch_means(train).std(), rel=1e-12)
    np.testing.assert_array_equal(patches.normalize_for_sigmoid(train, limit=limit),
                                  patches.normalize_for_sigmoid(train))
    # New patches with twice the contrast: clipped at the training limit, not rescaled to their own.
    new = 2 * rng.normal(size=(50, 16))
    out = patches.normalize_for_sigmoid(new, limit=limit)
    centred = patches.remove_patch_means(new)
    np.testing.assert_allclose(out, (np.clip(centred, -limit, limit) / limit + 1) * 0.4 + 0.1, atol=1e-15)
    assert np.isclose(out.max(), 0.9) and np.isclose(out.min(), 0.1)
    with pytest.raises(ValueError, match="limit"):
        patches.normalize_for_sigmoid(new, limit=0.0)


def test_normalization_of_flat_patches_is_a_clear_error():
    with pytest.raises(ValueError, match="patches"):
        patches.normalize_for_sigmoid(np.ones((10, 4)))


def test_zca_makes_the_covariance_close_to_identity():
    rng = np.random.default_rng(5)
    mixing = rng.normal(size=(16, 16))
    data = rng.normal(size=(20_000, 16)) @ mixing.T + 3.0        # correlated, non-zero mean
    mean_patch, W_zca = patches.fit_zca(data, epsilon=1e-10)
    white = patches.apply_zca(data, mean_patch, W_zca)
    np.testing.assert_allclose(white.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(np.cov(white, rowvar=False, bias=True), np.eye(16), atol=1e-6)
    np.testing.assert_allclose(W_zca, W_zca.T, atol=1e-12)       # ZCA, not PCA: symmetric


def test_zca_epsilon_shrinks_low_variance_directions():
    rng = np.random.default_rng(6)
    data = rng.normal(size=(5000, 4)) * np.array([10.0, 1.0, 0.1, 0.01])
    mean_patch, W_zca = patches.fit_zca(data, epsilon=0.1)
    variances = patches.apply_zca(data, mean_patch, W_zca).var(axis=0)
    expected = np.array([100.0, 1.0, 0.01, 1e-4]) / (np.array([100.0, 1.0, 0.01, 1e-4]) + 0.1)
    np.testing.assert_allclose(variances, expected, rtol=0.05)


def test_default_image_ships_with_matplotlib():
    path = patches.default_image_path()
    assert os.path.isfile(path)
    (image,) = patches.load_images()
    assert image.shape == (600, 512)
    assert image.dtype == np.float64 and 0 <= image.min() and image.max() <= 1


def test_user_images_load_grey_in_unit_range(tmp_path):
    import matplotlib.image

    rgb = np.random.default_rng(0).uniform(size=(20, 24, 3))
    path = tmp_path / "colour.png"
    matplotlib.image.imsave(path, rgb)
    (image,) = patches.load_images([path])
    assert image.shape == (20, 24)
    assert 0 <= image.min() and image.max() <= 1


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: patches.load_grey_image("/no/such/file.png"), "images"),
        (lambda: patches.sample_patches([np.zeros((4, 4))], 10, 8), "images"),
        (lambda: patches.sample_patches([np.zeros((9, 9))], 0, 8), "n_patches"),
        (lambda: patches.sample_patches([np.zeros((9, 9))], 10, 0), "size"),
        (lambda: patches.whitening_filter((8, 8), cutoff=0), "cutoff"),
        (lambda: patches.fit_zca(np.zeros((5, 3)), epsilon=-1), "epsilon"),
    ],
)
def test_bad_input_names_the_argument(call, argument):
    with pytest.raises((ValueError, FileNotFoundError), match=argument):
        call()


def test_a_file_that_is_not_an_image_is_a_clear_error(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(ValueError, match="notes.png"):
        patches.load_grey_image(path)


def test_image_shape_reads_the_header_like_load_grey_image(tmp_path):
    import matplotlib.image

    path = tmp_path / "wide.png"
    matplotlib.image.imsave(path, np.random.default_rng(0).uniform(size=(13, 21, 3)))
    assert patches.image_shape(path) == (13, 21) == patches.load_grey_image(path).shape
    assert patches.image_shape(patches.default_image_path()) == (600, 512)
    with pytest.raises(FileNotFoundError, match="images: no such file"):
        patches.image_shape(tmp_path / "none.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ValueError, match="images: cannot read .*text.png"):
        patches.image_shape(tmp_path / "text.png")


def test_zca_refuses_patches_that_are_all_the_same():
    # 1 x 1 patches minus their own mean are all 0: whitening them trained on zeros (FVE nan).
    with pytest.raises(ValueError, match="patches: every patch is the same"):
        patches.fit_zca(np.zeros((20, 1)))
    with pytest.raises(ValueError, match="patches: every patch is the same"):
        patches.fit_zca(np.tile([0.2, 0.5, 0.1], (10, 1)))
