"""The images of the patches experiment and the localization measure.

- saelab/data/dead_leaves.py: synthetic images with natural-image statistics;
- saelab/data/olshausen.py: Olshausen's IMAGES.mat, with a synthetic .mat and a fake
  downloader (no network in the tests);
- saelab/localization.py: the spread of a filter's energy.
"""

import hashlib
import io
import urllib.error

import numpy as np
import pytest
import scipy.io

import train_patches
from saelab import localization
from saelab.data import dead_leaves, olshausen, patches
from saelab.training import autoencoder as train
from test_patches import spectrum_slope


# ---------------------------------------------------------------------------
# Dead leaves
# ---------------------------------------------------------------------------


def test_dead_leaves_are_reproducible_greys_in_the_unit_interval():
    images = dead_leaves.dead_leaves_images(count=2, size=64, seed=3)
    again = dead_leaves.dead_leaves_images(count=2, size=64, seed=3)
    assert len(images) == 2 and all(image.shape == (64, 64) and image.dtype == np.float64 for image in images)
    for image, same in zip(images, again):
        np.testing.assert_array_equal(image, same)
        assert 0 <= image.min() and image.max() <= 1
    assert not np.array_equal(images[0], images[1])
    assert not np.array_equal(images[0], dead_leaves.dead_leaves_images(count=1, size=64, seed=4)[0])


def test_dead_leaves_are_flat_regions_cut_by_sharp_edges():
    image = dead_leaves.dead_leaves_image(128, rng=0)
    same_as_right = image[:, 1:] == image[:, :-1]
    same_as_below = image[1:, :] == image[:-1, :]
    # Occlusion: most pixels have exactly the grey of their neighbour (one disc), the rest
    # jump at an edge; many discs show, so there are many greys.
    assert 0.7 < same_as_right.mean() < 0.98 and 0.7 < same_as_below.mean() < 0.98
    assert np.unique(image).size > 100


def test_dead_leaves_have_the_power_spectrum_of_natural_images():
    # Scale invariance: power falls as about 1/f^2, as in photographs of natural scenes.
    image = dead_leaves.dead_leaves_image(512, rng=0)
    assert -2.5 < spectrum_slope(image - image.mean()) < -1.7


def test_radii_follow_the_scale_invariant_power_law():
    radii = dead_leaves.sample_radii(200_000, np.random.default_rng(0), r_min=2.0, r_max=128.0)
    assert radii.min() >= 2.0 and radii.max() <= 128.0
    # p(r) ~ r^-3: P(r < 4) = (2^-2 - 4^-2) / (2^-2 - 128^-2) = 0.75006...
    assert np.mean(radii < 4) == pytest.approx((2.0 ** -2 - 4.0 ** -2) / (2.0 ** -2 - 128.0 ** -2), abs=0.005)
    assert np.mean(np.pi * radii ** 2) == pytest.approx(dead_leaves.mean_disc_area(2.0, 128.0), rel=0.03)


@pytest.mark.parametrize("call, argument", [
    (lambda: dead_leaves.dead_leaves_image(1), "size"),
    (lambda: dead_leaves.dead_leaves_image(8.5), "size"),
    (lambda: dead_leaves.dead_leaves_image(16, r_min=0), "r_min"),
    (lambda: dead_leaves.dead_leaves_image(16, r_min=4, r_max=4), "r_max"),
    (lambda: dead_leaves.dead_leaves_image(16, r_max=float("nan")), "r_max"),
    (lambda: dead_leaves.dead_leaves_image(16, rng="x"), "rng"),
    (lambda: dead_leaves.dead_leaves_images(count=0), "count"),
    (lambda: dead_leaves.dead_leaves_image(10 ** 7), "size"),            # beyond memory
])
def test_dead_leaves_bad_arguments_are_named(call, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        call()


# ---------------------------------------------------------------------------
# Localization
# ---------------------------------------------------------------------------


def test_energy_spread_evenly_over_the_tile_is_one():
    checkerboard = np.indices((6, 6)).sum(axis=0) % 2 * 2.0 - 1      # +-1, mean 0, even energy
    assert localization.filter_spread(checkerboard.reshape(1, -1), (6, 6))[0] == pytest.approx(1.0)


def test_a_dipole_has_the_spread_of_its_two_pixels():
    w = np.zeros((8, 8))
    w[3, 4], w[3, 5] = 1.0, -1.0                          # mean 0: energy 1/2 on each pixel
    expected = 0.5 / np.sqrt(2 * (8 * 8 - 1) / 12)         # 0.5 pixel from the centre
    assert localization.filter_spread(w.reshape(1, -1), (8, 8))[0] == pytest.approx(expected)


def edge(shape, top, left, size=3):
    """A small light/dark edge on a zero tile: a size x size square of +1 above one of -1, at (top, left)."""
    w = np.zeros(shape)
    w[top:top + size, left:left + size] = 1.0
    w[top + size:top + 2 * size, left:left + size] = -1.0
    return w


def test_spread_does_not_depend_on_position_sign_scale_or_an_added_constant():
    a = localization.filter_spread(edge((12, 12), 1, 1).reshape(1, -1), (12, 12))[0]
    moved = edge((12, 12), 5, 7)
    for w in (moved, -moved, 3.5 * moved):
        assert localization.filter_spread(w.reshape(1, -1), (12, 12))[0] == pytest.approx(a)
    # An added constant is removed first (the patches' means are removed before training).
    shifted = edge((12, 12), 1, 1) + 0.7
    assert localization.filter_spread(shifted.reshape(1, -1), (12, 12))[0] == pytest.approx(a)


def test_a_grating_is_spread_and_an_edge_is_localized():
    y, x = np.indices((8, 8))
    grating = np.sin(2 * np.pi * (x + y) / 5)
    W = np.stack([grating.ravel(), edge((8, 8), 1, 1, size=2).ravel()])
    spread = localization.filter_spread(W, (8, 8))
    assert spread[0] > 0.9 and spread[1] < 0.4
    # A rectangular tile: rows of 4 pixels by 10.
    rect = localization.filter_spread(np.random.default_rng(0).normal(size=(5, 40)), (4, 10))
    assert rect.shape == (5,) and np.all((rect > 0.5) & (rect < 1.3))


def test_a_constant_filter_has_no_spread():
    W = np.stack([np.full(16, 2.0), np.arange(16.0)])
    spread = localization.filter_spread(W, (4, 4))
    assert np.isnan(spread[0]) and np.isfinite(spread[1])


@pytest.mark.parametrize("W, tile_shape, argument", [
    (np.zeros((2, 16)), (4, 5), "W"),
    (np.zeros(16), (4, 4), "W"),
    (np.full((2, 4), np.nan), (2, 2), "W"),
    (np.zeros((2, 1)), (1, 1), "tile_shape"),
    (np.zeros((2, 4)), (2.0, 2), "tile_shape"),
    (np.zeros((2, 4)), (2, 2, 1), "tile_shape"),
    (np.zeros((2, 4)), (-2, -2), "tile_shape"),
    ([["a", "b"]], (1, 2), "W"),
])
def test_localization_bad_arguments_are_named(W, tile_shape, argument):
    with pytest.raises((ValueError, TypeError), match=argument):
        localization.filter_spread(W, tile_shape)


# ---------------------------------------------------------------------------
# Olshausen's IMAGES.mat (a small synthetic stand-in, a fake downloader)
# ---------------------------------------------------------------------------

SIDE, COUNT = 24, 3


@pytest.fixture
def small_format(monkeypatch):
    """IMAGES.mat's expected format made small: 3 images of 24 x 24."""
    monkeypatch.setattr(olshausen, "IMAGE_SIDE", SIDE)
    monkeypatch.setattr(olshausen, "IMAGE_COUNT", COUNT)


def mat_bytes(**variables):
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables)
    return buffer.getvalue()


def whitened_stack(seed=0):
    return np.random.default_rng(seed).normal(size=(SIDE, SIDE, COUNT))


@pytest.fixture
def fake_download(monkeypatch):
    """olshausen.fetch replaced: serves the bytes in ``served["data"]`` and records the URLs."""
    served = {"data": mat_bytes(IMAGES=whitened_stack()), "urls": []}

    def fetch(url, destination, timeout):
        served["urls"].append(url)
        if isinstance(served["data"], Exception):
            raise served["data"]
        destination.write(served["data"])

    monkeypatch.setattr(olshausen, "fetch", fetch)
    return served


def test_a_good_file_parses_into_its_images(small_format):
    stack = whitened_stack()
    images = olshausen.parse_images_mat(mat_bytes(IMAGES=stack), source="x.mat")
    assert len(images) == COUNT
    for k, image in enumerate(images):
        np.testing.assert_array_equal(image, stack[:, :, k])
        assert image.dtype == np.float64 and image.flags.c_contiguous


@pytest.mark.parametrize("data, message", [
    (b"not a mat file at all", "x.mat: not a MATLAB .mat file"),
    (mat_bytes(PICTURES=np.zeros((SIDE, SIDE, COUNT))), "x.mat: no variable IMAGES (found ['PICTURES'])"),
    (mat_bytes(IMAGES=np.zeros((SIDE, SIDE, COUNT + 1))), "has shape (24, 24, 4), expected (24, 24, 3)"),
    (mat_bytes(IMAGES=np.zeros((SIDE, SIDE))), "expected (24, 24, 3)"),
    (mat_bytes(IMAGES=np.full((SIDE, SIDE, COUNT), "a")), "holds <U1, expected real numbers"),
    (mat_bytes(IMAGES=np.where(np.eye(SIDE)[:, :, None], np.nan, whitened_stack())), "NaN or infinite"),
    (mat_bytes(IMAGES=np.concatenate([whitened_stack()[:, :, :2], np.ones((SIDE, SIDE, 1))], axis=2)),
     "image 3 of IMAGES is constant"),
])
def test_a_file_of_the_wrong_format_is_refused_by_name(small_format, data, message):
    with pytest.raises(ValueError) as info:
        olshausen.parse_images_mat(data, source="x.mat")
    assert message in str(info.value)


def test_a_missing_file_is_downloaded_checked_and_written_atomically(small_format, fake_download, tmp_path):
    data_dir = tmp_path / "olshausen"
    images, sha256 = olshausen.load_olshausen(data_dir)
    assert fake_download["urls"] == ["http://www.rctn.org/bruno/sparsenet/IMAGES.mat"]
    written = (data_dir / "IMAGES.mat").read_bytes()
    assert written == fake_download["data"] and sha256 == hashlib.sha256(written).hexdigest()
    assert sorted(p.name for p in data_dir.iterdir()) == ["IMAGES.mat"]           # no temporary file
    np.testing.assert_array_equal(images[1], whitened_stack()[:, :, 1])
    # Present: read, not downloaded again.
    olshausen.load_olshausen(data_dir)
    assert len(fake_download["urls"]) == 1


@pytest.mark.parametrize("failure", ["offline", "not the file"])
def test_offline_or_a_bad_download_is_one_line_with_the_url_and_leaves_nothing(
        small_format, fake_download, tmp_path, failure):
    fake_download["data"] = (urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
                             if failure == "offline" else b"<html>Not Found</html>")
    data_dir = tmp_path / "olshausen"
    with pytest.raises(olshausen.OlshausenNotFoundError) as info:
        olshausen.load_olshausen(data_dir)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"IMAGES.mat is not in {data_dir} (download failed: ")
    assert message.endswith("download http://www.rctn.org/bruno/sparsenet/IMAGES.mat into that folder, "
                            "or pass --data-dir with a folder that has it")
    assert not data_dir.exists() or list(data_dir.iterdir()) == []


def test_a_corrupt_file_in_place_is_named_with_what_to_do(small_format, fake_download, tmp_path):
    data_dir = tmp_path / "olshausen"
    data_dir.mkdir()
    (data_dir / "IMAGES.mat").write_bytes(mat_bytes(IMAGES=np.zeros((SIDE, SIDE, 2))))
    with pytest.raises(ValueError) as info:
        olshausen.load_olshausen(data_dir)
    assert str(info.value).startswith(f"{data_dir / 'IMAGES.mat'}: IMAGES has shape (24, 24, 2)")
    assert str(info.value).endswith("; delete the file to download it again")
    assert fake_download["urls"] == []                               # present: not downloaded


def test_load_olshausen_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="data_dir"):
        olshausen.load_olshausen(3)
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    with pytest.raises(ValueError, match="data_dir"):
        olshausen.load_olshausen(a_file)
    with pytest.raises(olshausen.OlshausenNotFoundError, match="downloading is switched off"):
        olshausen.load_olshausen(tmp_path / "empty", download_missing=False)


def test_train_patches_uses_olshausens_images_as_they_are(small_format, fake_download, tmp_path, capsys):
    data_dir, out_dir = tmp_path / "data", tmp_path / "out"
    argv = ["--images", "olshausen", "--data-dir", str(data_dir), "--patches", "200", "--test-patches", "20",
            "--size", "6", "--hidden", "4", "--iters", "3", "--quiet", "--out-dir", str(out_dir)]
    assert train_patches.main(argv) == 0
    out = capsys.readouterr().out
    sha256 = hashlib.sha256((data_dir / "IMAGES.mat").read_bytes()).hexdigest()
    data_line = out.splitlines()[0]
    assert data_line.startswith(f"Data: Olshausen's 3 natural scenes, 24 x 24 pixels "
                                f"({data_dir / 'IMAGES.mat'}, SHA-256 {sha256}), already whitened by "
                                f"Olshausen, not whitened again; 200 training + 20 test patches")
    model = train.SparseAutoencoder.load(out_dir / "patches_olshausen_model.npz")
    assert model.info_["images"]["sha256"] == sha256 and model.info_["image_whitening"] is None
    # Not whitened again: the patches are the exercise's normalization of the raw file's pixels.
    args = train_patches.parse_args(argv)
    images = [whitened_stack()[:, :, k] for k in range(COUNT)]
    X_train, _, _, _ = train_patches.prepare_data(args, images)
    raw = patches.sample_patches(images, 200, 6, np.random.default_rng(0))
    np.testing.assert_array_equal(X_train, patches.normalize_for_sigmoid(raw))
    np.testing.assert_array_equal(train_patches.patch_inputs(model, raw), X_train)


def test_data_dir_that_is_a_file_is_refused_by_name(tmp_path, capsys):
    a_file = tmp_path / "IMAGES.mat"
    a_file.write_bytes(b"")
    with pytest.raises(SystemExit) as info:
        train_patches.parse_args(["--images", "olshausen", "--data-dir", str(a_file)])
    assert info.value.code == 2
    assert f"error: --data-dir: {a_file} is a file" in capsys.readouterr().err.strip().splitlines()[-1]


def test_train_patches_offline_says_what_to_do_in_one_line(small_format, fake_download, tmp_path, capsys):
    fake_download["data"] = urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    status = train_patches.main(["--images", "olshausen", "--data-dir", str(tmp_path / "data"),
                                 "--out-dir", str(tmp_path / "out")])
    assert status == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("error: --images olshausen: IMAGES.mat is not in ")
    assert "http://www.rctn.org/bruno/sparsenet/IMAGES.mat" in err and "--data-dir" in err
    assert not (tmp_path / "out").exists()
