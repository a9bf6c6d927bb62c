"""self_taught.py: UFLDL's split, an end-to-end run on synthetic digits, a short real-MNIST run."""

import gzip
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from saelab.data import mnist
import self_taught
from saelab.training import autoencoder as train
from conftest import MNIST_DIR, ROOT
from test_mnist import idx_bytes
from test_plots import png_size

OUTPUTS = ("self_taught_model.npz", "self_taught_filters.png", "self_taught_training_curve.png",
           "self_taught_rho_hat.png", "self_taught_reconstructions.png", "self_taught_summary.txt",
           "self_taught_accuracy.png", "self_taught_results.txt")
MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)
MNIST_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)
needs_mnist = pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"real MNIST not found in {MNIST_DIR}")


# ---------------------------------------------------------------------------
# The split
# ---------------------------------------------------------------------------


def check_ufldl_sets(labels, unlabeled, train_set, test_set):
    """The properties of stlExercise.m's sets, checked against the labels directly."""
    labeled = np.array([i for i, label in enumerate(labels) if label <= 4])   # file order
    assert unlabeled.tolist() == [i for i, label in enumerate(labels) if label >= 5]
    n_train = int(np.floor(labeled.size / 2 + 0.5))          # MATLAB's round: halves go up
    assert train_set.tolist() == labeled[:n_train].tolist()
    assert test_set.tolist() == labeled[n_train:].tolist()
    assert not set(unlabeled) & set(train_set) and not set(unlabeled) & set(test_set)
    assert not set(train_set) & set(test_set)


@pytest.mark.parametrize("seed, m", [(0, 1), (1, 2), (2, 7), (3, 50), (4, 333)])
def test_split_reproduces_ufldl_sets(seed, m):
    labels = np.random.default_rng(seed).integers(0, 10, size=m + 3)
    labels[:3] = [3, 8, 0]                                    # at least 2 labeled, 1 unlabeled
    unlabeled, train_set, test_set = self_taught.ufldl_split(labels)
    check_ufldl_sets(labels, unlabeled, train_set, test_set)


def test_split_of_an_odd_labeled_set_gives_the_extra_image_to_training():
    labels = np.array([9, 0, 1, 5, 2, 3, 7, 4, 0, 1])         # 7 labeled images: round(3.5) = 4
    unlabeled, train_set, test_set = self_taught.ufldl_split(labels)
    assert unlabeled.tolist() == [0, 3, 6]
    assert train_set.tolist() == [1, 2, 4, 5]
    assert test_set.tolist() == [7, 8, 9]


def test_split_limits_keep_the_first_images_in_file_order():
    labels = np.array([9, 0, 1, 5, 2, 3, 7, 4, 0, 6])
    unlabeled, train_set, test_set = self_taught.ufldl_split(labels, labeled_limit=5,
                                                             unlabeled_limit=2)
    assert unlabeled.tolist() == [0, 3]
    assert train_set.tolist() == [1, 2, 4]
    assert test_set.tolist() == [5, 7]


@pytest.mark.parametrize("kwargs, message", [
    ({"labeled_limit": 8}, "labeled_limit: there are only 6 images of digits 0-4, got 8"),
    ({"unlabeled_limit": 5}, "unlabeled_limit: there are only 4 images of digits 5-9, got 5"),
    ({"labeled_limit": 1}, "at least 2 images of digits 0-4"),
    ({"labeled_digits": (0, 1, 5)}, "no digit in both"),
])
def test_split_refuses_impossible_requests(kwargs, message):
    labels = np.array([9, 0, 1, 5, 2, 3, 7, 4, 0, 6])
    with pytest.raises(ValueError, match=message):
        self_taught.ufldl_split(labels, **kwargs)


def test_split_refuses_non_integer_labels():
    with pytest.raises(ValueError, match="labels: expected a 1-D array of integer labels"):
        self_taught.ufldl_split(np.array([0.0, 5.0]))


def test_class_of_digit():
    assert self_taught.class_of_digit(np.array([4, 0, 3])).tolist() == [4, 0, 3]
    assert self_taught.class_of_digit(np.array([7, 9]), digits=(7, 9)).tolist() == [0, 1]
    with pytest.raises(ValueError, match="only digits 0-4"):
        self_taught.class_of_digit(np.array([0, 5]))


def read_labels(split):
    _, label_name = mnist.SPLITS[split]
    return mnist.read_idx(mnist.find_file(MNIST_DIR, label_name), sha256=mnist.SHA256[label_name])


@needs_mnist
def test_split_of_real_mnist_matches_ufldl():
    labels = read_labels("train")
    unlabeled, train_set, test_set = self_taught.ufldl_split(labels)
    check_ufldl_sets(labels, unlabeled, train_set, test_set)
    assert unlabeled.size == sum(MNIST_TRAIN_COUNTS[5:]) == 29404
    assert train_set.size == test_set.size == sum(MNIST_TRAIN_COUNTS[:5]) // 2 == 15298
    assert set(labels[unlabeled]) == {5, 6, 7, 8, 9}
    assert set(labels[train_set]) == set(labels[test_set]) == {0, 1, 2, 3, 4}
    official = self_taught.digit_indices(read_labels("test"), self_taught.LABELED_DIGITS)
    assert official.size == sum(MNIST_TEST_COUNTS[:5]) == 5139


# ---------------------------------------------------------------------------
# End to end on synthetic digits
# ---------------------------------------------------------------------------


def synthetic_digits(rng, n):
    """Images (n, 28, 28) uint8 and labels (n,) uint8 of ten made-up 'digits'.

    Each digit is the union of two of eight 'strokes' (random 40-pixel
    masks), every stroke used by digits on both sides of the 0-4 / 5-9
    split, so features learned from 5-9 also describe 0-4. Images are the
    strokes at random brightness plus noise.
    """
    strokes = np.zeros((8, 784))
    stroke_rng = np.random.default_rng(12345)
    for stroke in strokes:
        stroke[stroke_rng.choice(784, size=40, replace=False)] = 1
    pairs = [(0, 1), (2, 3), (4, 5), (6, 7), (0, 4), (1, 5), (2, 6), (3, 7), (0, 6), (1, 3)]
    labels = rng.integers(0, 10, size=n)
    brightness = rng.uniform(0.6, 1.0, size=(n, 1))
    images = np.array([np.maximum(strokes[a], strokes[b]) for a, b in (pairs[d] for d in labels)])
    images = np.clip(images * brightness + rng.uniform(0, 0.3, size=images.shape), 0, 1)
    return (np.round(255 * images).astype(np.uint8).reshape(n, 28, 28), labels.astype(np.uint8))


def write_synthetic_mnist(data_dir, monkeypatch, n_train=400, n_test=100, seed=0):
    """Synthetic digits as MNIST-named .gz files; the loader is told to expect their checksums."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = synthetic_digits(rng, n)
        arrays[split] = labels
        for name, array in zip(mnist.SPLITS[split], (images, labels)):
            data = idx_bytes(array)
            monkeypatch.setitem(mnist.SHA256, name, hashlib.sha256(data).hexdigest())
            (data_dir / f"{name}.gz").write_bytes(gzip.compress(data))
    return arrays


def test_end_to_end_on_synthetic_digits(tmp_path, monkeypatch, capsys):
    data_dir, out_dir = tmp_path / "data", tmp_path / "out"
    data_dir.mkdir()
    labels = write_synthetic_mnist(data_dir, monkeypatch)
    status = self_taught.main(["--data-dir", str(data_dir), "--hidden", "8", "--iters", "30",
                               "--softmax-iters", "100", "--out-dir", str(out_dir), "--quiet"])
    assert status == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(OUTPUTS)

    n_labeled = int(np.sum(labels["train"] <= 4))
    n_train = (n_labeled + 1) // 2
    model = train.SparseAutoencoder.load(out_dir / "self_taught_model.npz")
    assert model.params_["W1"].shape == (8, 784)
    assert model.n_hidden == 8 and model.rho == 0.1 and model.lam == 3e-3 and model.beta == 3
    softmax_info = model.info_["softmax"]
    assert softmax_info["m_train"] == n_train and softmax_info["lam"] == 1e-4
    assert model.extra_["softmax_features_W"].shape == (5, 8)
    assert model.extra_["softmax_pixels_W"].shape == (5, 784)
    assert model.extra_["softmax_pixels_b"].shape == (5,)
    accuracy = softmax_info["accuracy"]
    # The digits are easy: both classifiers must get (nearly) all of them.
    for representation in ("features", "pixels"):
        for key in ("test_half", "official_test"):
            assert accuracy[representation][key] >= 0.95, (representation, key, accuracy)
    # The printed table and the results file report the saved model's numbers.
    results_text = (out_dir / "self_taught_results.txt").read_text()
    assert results_text.strip() in out
    row = next(line for line in results_text.splitlines() if "UFLDL test set" in line)
    assert f"{n_labeled - n_train:>7}" in row
    assert f"{accuracy['features']['test_half']:.2%}" in row
    assert f"{accuracy['pixels']['test_half']:.2%}" in row
    assert "dead units" in out and "vs rho 0.1" in out       # the autoencoder's summary
    assert png_size(out_dir / "self_taught_accuracy.png") == (1100, 480)


def test_features_come_from_the_saved_autoencoder(tmp_path, monkeypatch):
    """Recomputing the classifier's accuracy from the saved file gives the saved number."""
    from saelab.softmax import accuracy, predict

    data_dir, out_dir = tmp_path / "data", tmp_path / "out"
    data_dir.mkdir()
    write_synthetic_mnist(data_dir, monkeypatch, n_train=200, n_test=40, seed=1)
    assert self_taught.main(["--data-dir", str(data_dir), "--hidden", "6", "--iters", "10",
                             "--softmax-iters", "20", "--no-softmax-bias", "--out-dir", str(out_dir),
                             "--quiet"]) == 0
    model = train.SparseAutoencoder.load(out_dir / "self_taught_model.npz")
    assert "softmax_features_b" not in model.extra_             # UFLDL's bias-free softmax
    X_train, y_train = mnist.load_mnist(data_dir, "train", download_missing=False)
    X_test, y_test = mnist.load_mnist(data_dir, "test", download_missing=False)
    data = self_taught.self_taught_data(X_train, y_train, X_test, y_test)
    params = {"W": model.extra_["softmax_features_W"]}
    predicted = predict(params, model.encode(data["test_X"]))
    assert accuracy(data["test_y"], predicted) == model.info_["softmax"]["accuracy"]["features"]["test_half"]


# ---------------------------------------------------------------------------
# Options and errors
# ---------------------------------------------------------------------------


def test_help_lists_every_option():
    result = subprocess.run([sys.executable, "self_taught.py", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())                    # argparse wraps lines anywhere
    for option in ("--data-dir", "--unlabeled-limit", "--labeled-limit", "--test-limit",
                   "--softmax-lam", "--softmax-iters", "--softmax-bias", "--no-softmax-bias",
                   "--hidden", "--rho", "--lam", "--beta", "--iters", "--seed", "--dtype", "--out-dir"):
        assert option in text
    for default in ("default 200", "default 0.1", "default 0.003", "default 400", "default 0.0001"):
        assert default in text


@pytest.mark.parametrize("argv, message", [
    (["--softmax-lam", "-1"], "expected a finite number >= 0"),
    (["--softmax-iters", "0"], "expected a positive integer"),
    (["--labeled-limit", "x"], "expected a positive integer"),
])
def test_bad_options_are_refused_by_argparse(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        self_taught.main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--labeled-limit", "10000"], "--labeled-limit: the MNIST training split has"),
    (["--unlabeled-limit", "10000"], "--unlabeled-limit: the MNIST training split has"),
    (["--test-limit", "10000"], "--test-limit: the MNIST test split has"),
    (["--labeled-limit", "1"], "--labeled-limit: expected at least 2"),
])
def test_limits_beyond_the_data_are_refused(tmp_path, monkeypatch, capsys, argv, message):
    write_synthetic_mnist(tmp_path, monkeypatch, n_train=40, n_test=10)
    with pytest.raises(SystemExit) as info:
        self_taught.main(["--data-dir", str(tmp_path), "--out-dir", str(tmp_path / "out"), *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_missing_data_is_an_error_not_a_traceback(tmp_path, capsys, monkeypatch):
    def no_network(url, destination, timeout):
        raise OSError("no network")

    monkeypatch.setattr(mnist, "fetch", no_network)
    assert self_taught.main(["--data-dir", str(tmp_path / "none"), "--out-dir", str(tmp_path / "out")]) == 1
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------
# Real MNIST, few iterations
# ---------------------------------------------------------------------------


@needs_mnist
def test_short_run_on_real_mnist(tmp_path):
    command = [sys.executable, "self_taught.py", "--data-dir", str(MNIST_DIR),
               "--unlabeled-limit", "2000", "--labeled-limit", "3000", "--test-limit", "1000",
               "--hidden", "64", "--iters", "20", "--softmax-iters", "100",
               "--out-dir", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUTS)
    model = train.SparseAutoencoder.load(tmp_path / "self_taught_model.npz")
    assert model.history_["iteration"][-1] == 20
    assert model.info_["softmax"]["m_train"] == 1500
    accuracy = model.info_["softmax"]["accuracy"]
    # Raw pixels: about 96% on digits 0-4 even from 1500 examples; features
    # after only 20 autoencoder iterations are weaker but far above chance (20%).
    for key in ("test_half", "official_test"):
        assert accuracy["pixels"][key] > 0.9, accuracy
        assert accuracy["features"][key] > 0.8, accuracy
    assert f"{accuracy['features']['test_half']:.2%}" in result.stdout
