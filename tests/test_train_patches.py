"""train_patches.py: options, presets, bad combinations, short runs of both variants."""

import os
import subprocess
import sys

import numpy as np
import pytest

from saelab.data import patches
from saelab.figures import plots
from saelab.training import autoencoder as train
import train_patches
from conftest import ROOT

OPTIONS = ("--images", "--data-dir", "--patches", "--test-patches", "--size", "--cutoff", "--no-whiten", "--zca",
           "--zca-epsilon", "--preset", "--hidden", "--penalty", "--rho", "--beta", "--lam",
           "--decoder", "--dtype", "--seed", "--optimizer", "--iters", "--lr", "--batch-size",
           "--epochs", "--out-dir", "--quiet")
OUTPUTS = ("model.npz", "filters.png", "training_curve.png", "rho_hat.png", "reconstructions.png",
           "summary.txt")


@pytest.fixture
def image_path(tmp_path):
    """A small colour PNG with smooth random texture (a blurred noise field)."""
    import matplotlib.image

    rng = np.random.default_rng(0)
    noise = rng.normal(size=(36, 44, 3))
    kernel = np.ones(5) / 5
    for axis in (0, 1):                                  # box blur: neighbouring pixels correlate
        noise = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), axis, noise)
    rgb = (noise - noise.min()) / (noise.max() - noise.min())
    path = tmp_path / "texture.png"
    matplotlib.image.imsave(path, rgb)
    return path


def expected_png_shape(W, tile_shape):
    """(height, width) in pixels of ``plots.save_filter_grid``'s PNG for these filters."""
    grid = plots.filter_grid(W, tile_shape)
    scale = plots.auto_scale(grid.shape)
    return grid.shape[0] * scale, grid.shape[1] * scale


def test_help_lists_every_option_with_the_exercise_defaults():
    result = subprocess.run([sys.executable, "train_patches.py", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())                    # undo argparse's line wrapping
    for option in OPTIONS:
        assert option in text
    for default in ("default 10000", "default 8)", "default 25)", "(default 0.01)", "default 0.0001",
                    "default 400", "(default 0.4, theirs, for the dead-leaves images; 0.2 for photographs",
                    "(default 0.1;", "seed of the patch sampling", "dead-leaves (the default",
                    "synthetic 512 x 512 images with natural", "not photographs",
                    "olshausen", "portrait", "(default data/olshausen)"):
        assert default in text, default


def test_defaults_are_the_exercise_on_synthetic_natural_images():
    args = train_patches.parse_args([])
    assert (args.patches, args.size, args.hidden, args.iters, args.seed) == (10_000, 8, 25, 400, 0)
    assert (args.rho, args.lam, args.penalty, args.decoder, args.optimizer) == (0.01, 1e-4, "kl",
                                                                                 "sigmoid", "lbfgs")
    assert args.source == "dead-leaves" and args.images is None and args.data_dir is None
    assert args.cutoff == 0.4 and not args.no_whiten and not args.zca     # Olshausen's cutoff
    assert train_patches.run_name(args) == "patches"
    model = train_patches.experiment.model_from_args(args)
    assert model.beta == 3.0


def test_preset_notes_is_10x10_patches_and_100_hidden_units():
    args = train_patches.parse_args(["--preset", "notes"])
    assert (args.size, args.hidden) == (10, 100)
    assert (args.rho, args.lam, args.iters, args.decoder, args.cutoff) == (0.01, 1e-4, 400, "sigmoid", 0.4)
    assert train_patches.run_name(args) == "patches_notes"
    explicit = train_patches.parse_args(["--hidden", "49", "--preset", "notes"])
    assert (explicit.size, explicit.hidden) == (10, 49)            # the explicit option wins


def test_zca_sets_the_linear_decoder_exercise_defaults():
    args = train_patches.parse_args(["--decoder", "linear", "--zca"])
    assert (args.decoder, args.rho, args.lam, args.beta, args.zca_epsilon) == ("linear", 0.035, 3e-3, 5.0, 0.1)
    assert (args.size, args.hidden) == (8, 25)
    assert train_patches.run_name(args) == "patches_zca"
    assert train_patches.parse_args(["--zca"]).decoder == "linear"           # implied
    assert train_patches.parse_args(["--zca", "--beta", "2"]).beta == 2.0    # explicit wins
    assert train_patches.parse_args(["--zca", "--penalty", "l1"]).beta is None  # L1 keeps its own default
    both = train_patches.parse_args(["--zca", "--preset", "notes", "--rho", "0.05"])
    assert (both.size, both.hidden, both.rho, both.lam) == (10, 100, 0.05, 3e-3)
    assert train_patches.run_name(both) == "patches_notes_zca"


@pytest.mark.parametrize("argv, source, images, cutoff, name", [
    (["--images", "portrait"], "portrait", None, 0.2, "patches_portrait"),
    (["--images", "portrait", "--preset", "notes"], "portrait", None, 0.2, "patches_portrait_notes"),
    (["--images", "portrait", "--zca"], "portrait", None, None, "patches_portrait_zca"),
    (["--images", "olshausen"], "olshausen", None, None, "patches_olshausen"),
    (["--images", "dead-leaves", "--preset", "notes"], "dead-leaves", None, 0.4, "patches_notes"),
    (["--images", "a.png", "b.jpg"], "files", ["a.png", "b.jpg"], 0.2, "patches"),
    (["--images", "./portrait"], "files", ["portrait"], 0.2, "patches"),
])
def test_images_names_a_source_or_files(argv, source, images, cutoff, name):
    args = train_patches.parse_args(argv)
    assert args.source == source and train_patches.run_name(args) == name
    assert args.images == (None if images is None else [train_patches.Path(p) for p in images])
    assert (args.cutoff == cutoff) or (cutoff is None and not train_patches.whitens_images(args))
    if source == "olshausen":
        assert str(args.data_dir) == "data/olshausen"


@pytest.mark.parametrize("argv, message", [
    (["--images", "olshausen", "--zca"], "--images olshausen with --zca: Olshausen's images are already whitened"),
    (["--images", "olshausen", "--cutoff", "0.4"], "--images olshausen with --cutoff"),
    (["--data-dir", "data"], "--data-dir without --images olshausen"),
    (["--images", "portrait", "a.png"], "--images: portrait names a set of images and stands alone"),
    (["--images", "olshausen", "--data-dir", ""], "--data-dir"),
    # --size: refused by name, before the memory check (which blamed --patches) and before loading.
    (["--size", "1"], "--size: expected at least 2, got 1"),
    (["--size", "1", "--zca"], "--size: expected at least 2, got 1"),
    (["--size", "513"], "--size: 513 x 513 patches do not fit in the dead-leaves images (512 x 512 pixels)"),
    (["--size", "3000", "--zca"], "--size: 3000 x 3000 patches do not fit in the dead-leaves images"),
    (["--size", "513", "--images", "portrait"], "--size: 513 x 513 patches do not fit in the portrait "
                                                "(600 x 512 pixels); use --size 512 or less"),
    (["--size", "600", "--images", "olshausen"], "--size: 600 x 600 patches do not fit in Olshausen's images"),

    (["--zca", "--decoder", "sigmoid"], "--zca with --decoder sigmoid"),
    (["--zca", "--cutoff", "0.3"], "--zca with --cutoff"),
    (["--no-whiten", "--cutoff", "0.3"], "--no-whiten with --cutoff"),
    (["--zca-epsilon", "0.2"], "--zca-epsilon without --zca"),
    (["--cutoff", "0"], "expected a finite number > 0"),
    (["--zca", "--zca-epsilon", "-1"], "expected a finite number > 0"),
    (["--size", "0"], "expected a positive integer"),
    (["--preset", "paper"], "invalid choice"),
    (["--images"], "expected at least one argument"),
])
def test_bad_options_exit_2_with_a_one_line_reason(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        train_patches.parse_args(argv)
    assert info.value.code == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]     # after argparse's usage
    assert ": error: " in last_line and message in last_line


def test_unreadable_images_are_one_line_errors_and_a_too_large_size_is_refused_by_name(
        tmp_path, image_path, capsys):
    missing = tmp_path / "nowhere.png"
    assert train_patches.main(["--images", str(missing), "--out-dir", str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.strip() == f"error: images: no such file: {missing}"
    # Larger than the image: an option error naming --size (it was "error: images: ...", exit 1).
    with pytest.raises(SystemExit) as info:
        train_patches.main(["--images", str(image_path), "--size", "37", "--out-dir", str(tmp_path / "out")])
    assert info.value.code == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.endswith(f"error: --size: 37 x 37 patches do not fit in the smallest image "
                              f"(36 x 44 pixels); use --size 36 or less")
    assert not (tmp_path / "out").exists()


def test_size_one_is_refused_with_and_without_zca_and_zca_refuses_flat_patches(capsys):
    # --size 1 --zca used to train on all-zero patches (FVE nan); without --zca it stopped with
    # exit 1. Both are now the same option error, and fit_zca itself refuses flat patches.
    for argv in (["--size", "1"], ["--size", "1", "--zca"], ["--size", "1", "--zca", "--images", "portrait"]):
        with pytest.raises(SystemExit) as info:
            train_patches.parse_args(argv)
        assert info.value.code == 2
        assert "--size: expected at least 2" in capsys.readouterr().err.strip().splitlines()[-1]
    one_pixel = patches.remove_patch_means(np.random.default_rng(0).random((50, 1)))
    with pytest.raises(ValueError, match="patches: every patch is the same"):
        patches.fit_zca(one_pixel)


def test_short_run_of_the_script_end_to_end(tmp_path, image_path):
    out_dir = tmp_path / "out"
    argv = ["--images", str(image_path), "--patches", "300", "--test-patches", "40", "--size", "6",
            "--hidden", "9", "--iters", "15", "--out-dir", str(out_dir)]
    result = subprocess.run([sys.executable, "train_patches.py", *argv], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for part in ("Data: 1 image", "36 x 44", "whitened (Olshausen-Field, cutoff 0.2", "iter  0/15",
                 "Summary: 300 training examples, 36 -> 9", "final cost J",
                 "reconstruction MSE per input: train", "40 patches)", "vs rho 0.01", "dead units",
                 "wall time"):
        assert part in out, part
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"patches_{name}" for name in OUTPUTS)

    model = train.SparseAutoencoder.load(out_dir / "patches_model.npz")
    assert model.params_["W1"].shape == (9, 36)
    assert model.decoder == "sigmoid" and model.rho == 0.01 and model.beta == 3.0
    assert model.info_["tile_shape"] == [6, 6]
    assert model.info_["image_whitening"]["cutoff"] == 0.2
    assert model.history_["cost"][-1] < model.history_["cost"][0]

    # The printed J is the saved model's J on the same training patches, rebuilt here.
    args = train_patches.parse_args(argv)
    X_train, X_test, extra, info = train_patches.prepare_data(args, patches.load_images([image_path]))
    assert extra == {} and X_train.shape == (300, 36) and X_test.shape == (40, 36)
    assert f"{model.cost_terms(X_train)['cost']:.6g}" in out
    assert 0.1 <= X_train.min() and X_train.max() <= 0.9

    import matplotlib.image
    filters = matplotlib.image.imread(out_dir / "patches_filters.png")
    assert filters.shape[:2] == expected_png_shape(model.params_["W1"], (6, 6))


def test_zca_variant_end_to_end_saves_what_encodes_new_patches(tmp_path, image_path, capsys):
    import matplotlib.image

    out_dir = tmp_path / "out"
    argv = ["--images", str(image_path), "--decoder", "linear", "--zca", "--patches", "300",
            "--test-patches", "30", "--size", "5", "--hidden", "8", "--iters", "15", "--quiet",
            "--out-dir", str(out_dir)]
    assert train_patches.main(argv) == 0
    out = capsys.readouterr().out
    assert "not whitened" in out and "ZCA-whitened (epsilon 0.1)" in out
    assert "kl penalty (beta 5, rho 0.035), lam 0.003, linear decoder" in out
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(f"patches_zca_{name}" for name in OUTPUTS)

    model = train.SparseAutoencoder.load(out_dir / "patches_zca_model.npz")
    mean_patch, W_zca = model.extra_["zca_mean_patch"], model.extra_["zca_matrix"]
    assert mean_patch.shape == (25,) and W_zca.shape == (25, 25)
    np.testing.assert_allclose(W_zca, W_zca.T, atol=1e-12)
    assert model.info_["preprocessing"] == {"kind": "zca", "epsilon": 0.1}
    assert model.info_["image_whitening"] is None

    # Rebuild the raw patches the run drew: same images (not whitened), same seed.
    args = train_patches.parse_args(argv)
    images = patches.load_images([image_path])
    rng = np.random.default_rng(args.seed)
    train_raw = patches.sample_patches(images, 300, 5, rng)
    test_raw = patches.sample_patches(images, 30, 5, rng)
    X_train, X_test, _, _ = train_patches.prepare_data(args, images)
    # The saved arrays prepare patches exactly as the training run did ...
    np.testing.assert_array_equal(train_patches.patch_inputs(model, train_raw), X_train)
    np.testing.assert_array_equal(train_patches.patch_inputs(model, test_raw), X_test)
    # ... and that is ZCA of each patch minus its own mean.
    manual = (test_raw - test_raw.mean(axis=1, keepdims=True) - mean_patch) @ W_zca
    np.testing.assert_allclose(train_patches.patch_inputs(model, test_raw), manual, atol=1e-12)
    # Whitened training inputs: covariance close to W_zca's shrunk identity, mean 0.
    np.testing.assert_allclose(X_train.mean(axis=0), 0, atol=1e-12)
    new_raw = patches.sample_patches(images, 7, 5, rng=123)
    features = model.encode(train_patches.patch_inputs(model, new_raw))
    assert features.shape == (7, 8) and np.all((features > 0) & (features < 1))

    # The filter grid shows the filters on pixels, W1 @ W_zca, not W1.
    drawn = matplotlib.image.imread(out_dir / "patches_zca_filters.png")
    plots.save_filter_grid(model.params_["W1"] @ W_zca, tmp_path / "expected.png", (5, 5))
    plots.save_filter_grid(model.params_["W1"], tmp_path / "raw_W1.png", (5, 5))
    np.testing.assert_array_equal(drawn, matplotlib.image.imread(tmp_path / "expected.png"))
    assert not np.array_equal(drawn, matplotlib.image.imread(tmp_path / "raw_W1.png"))


def test_sigmoid_model_prepares_new_patches_with_the_training_limit(tmp_path, image_path):
    argv = ["--images", str(image_path), "--patches", "200", "--test-patches", "20", "--size", "4",
            "--hidden", "4", "--iters", "3", "--quiet", "--out-dir", str(tmp_path)]
    assert train_patches.main(argv) == 0
    model = train.SparseAutoencoder.load(tmp_path / "patches_model.npz")
    args = train_patches.parse_args(argv)
    images = patches.whiten_images(patches.load_images([image_path]), cutoff=0.2)
    rng = np.random.default_rng(args.seed)
    train_raw = patches.sample_patches(images, 200, 4, rng)
    test_raw = patches.sample_patches(images, 20, 4, rng)
    assert model.info_["preprocessing"]["limit"] == patches.sigmoid_limit(train_raw)
    _, X_test, _, _ = train_patches.prepare_data(args, patches.load_images([image_path]))
    np.testing.assert_array_equal(train_patches.patch_inputs(model, test_raw), X_test)
    with pytest.raises(ValueError, match="raw_patches"):
        train_patches.patch_inputs(model, test_raw[:, :9])


def test_patch_inputs_refuses_a_model_without_patch_preprocessing(tmp_path):
    model = train.SparseAutoencoder(3, max_iter=2).fit(np.random.default_rng(0).uniform(size=(20, 4)),
                                                       progress=False)
    with pytest.raises(ValueError, match="train_patches.py"):
        train_patches.patch_inputs(model, np.zeros((2, 4)))


def test_one_blas_thread_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    train_patches.limit_blas_threads()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    train_patches.limit_blas_threads()
    assert os.environ["OPENBLAS_NUM_THREADS"] == "2"
    monkeypatch.delenv("OPENBLAS_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    train_patches.limit_blas_threads()
    assert "OPENBLAS_NUM_THREADS" not in os.environ


def test_default_run_uses_synthetic_natural_images_and_reports_localization(tmp_path, capsys):
    out_dir = tmp_path / "out"
    argv = ["--patches", "300", "--test-patches", "0", "--hidden", "4", "--iters", "3", "--quiet",
            "--out-dir", str(out_dir)]
    assert train_patches.main(argv) == 0
    out = capsys.readouterr().out
    data_line = out.splitlines()[0]
    for part in ("Data: 10 synthetic images with natural-image statistics (dead leaves", "not photographs",
                 "512 x 512 pixels", "whitened (Olshausen-Field, cutoff 0.4 cycles/pixel)"):
        assert part in data_line, part
    model = train.SparseAutoencoder.load(out_dir / "patches_model.npz")
    assert model.info_["images"] == {"source": "dead-leaves", "count": 10, "size": 512, "seed": 0,
                                     "r_min": 2.0, "r_max": 128.0}
    assert model.info_["image_whitening"]["cutoff"] == 0.4
    # The localization line: printed, and the last line of the summary file, from the filters drawn.
    from saelab import localization
    spread = localization.filter_spread(model.params_["W1"], (8, 8))
    line = train_patches.localization_line(model.params_["W1"], 8)
    assert f"median spread {np.median(spread):.3f} of the tile" in line
    assert line in out.splitlines()
    assert (out_dir / "patches_summary.txt").read_text().splitlines()[-1] == line


def test_localization_line_of_the_zca_variant_measures_the_filters_on_pixels(tmp_path, image_path, capsys):
    argv = ["--images", str(image_path), "--zca", "--patches", "200", "--test-patches", "0", "--size", "5",
            "--hidden", "4", "--iters", "3", "--quiet", "--out-dir", str(tmp_path)]
    assert train_patches.main(argv) == 0
    model = train.SparseAutoencoder.load(tmp_path / "patches_zca_model.npz")
    expected = train_patches.localization_line(model.params_["W1"] @ model.extra_["zca_matrix"], 5)
    assert expected != train_patches.localization_line(model.params_["W1"], 5)
    assert expected in capsys.readouterr().out.splitlines()
    assert (tmp_path / "patches_zca_summary.txt").read_text().splitlines()[-1] == expected


def test_a_localization_line_that_cannot_be_added_is_exit_status_4(tmp_path, image_path, monkeypatch, capsys):
    def broken(W, size):
        raise ValueError("W: broken on purpose")

    monkeypatch.setattr(train_patches, "localization_line", broken)
    argv = ["--images", str(image_path), "--patches", "100", "--test-patches", "0", "--size", "4",
            "--hidden", "3", "--iters", "2", "--quiet", "--out-dir", str(tmp_path)]
    assert train_patches.main(argv) == 4
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the localization line:") and "broken on purpose" in err and "\n" not in err
    assert "localization" not in (tmp_path / "patches_summary.txt").read_text()
