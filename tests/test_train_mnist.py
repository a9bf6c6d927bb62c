"""train_mnist.py end to end: --help, a short real run, the L1 + Adam variant, missing data."""

import os
import subprocess
import sys
import urllib.error

import numpy as np
import pytest

from saelab.data import mnist
from saelab.training import autoencoder as train
import train_mnist
from conftest import MNIST_DIR, ROOT
from test_mnist import write_split

OPTIONS = ("--data-dir", "--examples", "--test-examples", "--hidden", "--penalty", "--rho", "--beta",
           "--lam", "--decoder", "--dtype", "--seed", "--optimizer", "--iters", "--lr",
           "--batch-size", "--epochs", "--out-dir", "--quiet", "--model", "--k", "--aux-k", "--l1")
OUTPUTS = ("mnist_model.npz", "mnist_filters.png", "mnist_training_curve.png", "mnist_rho_hat.png",
           "mnist_reconstructions.png", "mnist_summary.txt")


def test_help_lists_every_option_with_its_default():
    result = subprocess.run([sys.executable, "train_mnist.py", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for option in OPTIONS:
        assert option in result.stdout
    for default in ("default 196", "default 0.1", "default 0.003", "default 400", "default 10000"):
        assert default in result.stdout


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"real MNIST not found in {MNIST_DIR}")
def test_short_run_on_real_mnist(tmp_path):
    command = [sys.executable, "train_mnist.py", "--data-dir", str(MNIST_DIR), "--examples", "500",
               "--test-examples", "200", "--hidden", "16", "--iters", "15", "--out-dir", str(tmp_path)]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for part in ("iter  0/15", "final cost J", "reconstruction MSE per input: train",
                 "test", "mean rho_hat", "vs rho 0.1", "dead units", "wall time"):
        assert part in out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(OUTPUTS)
    model = train.SparseAutoencoder.load(tmp_path / "mnist_model.npz")
    assert model.params_["W1"].shape == (16, 784)
    assert model.hyperparameters()["rho"] == 0.1 and model.hyperparameters()["lam"] == 3e-3
    assert model.history_["cost"][-1] < model.history_["cost"][0]
    assert model.info_["tile_shape"] == [28, 28]
    X, _ = mnist.load_mnist(MNIST_DIR, "train", n=500, download_missing=False)
    terms = model.cost_terms(X)
    assert f"{terms['cost']:.6g}" in out                      # the summary reports the saved model's J


def test_l1_adam_variant_end_to_end(tmp_path, monkeypatch, capsys):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_split(data_dir, monkeypatch, split="train", n=40, seed=1)
    write_split(data_dir, monkeypatch, split="test", n=12, seed=2)
    out_dir = tmp_path / "out"
    status = train_mnist.main(["--data-dir", str(data_dir), "--examples", "40", "--test-examples", "12",
                               "--hidden", "9", "--penalty", "l1", "--optimizer", "adam", "--epochs", "3",
                               "--batch-size", "8", "--lr", "0.01", "--dtype", "float32",
                               "--out-dir", str(out_dir)])
    assert status == 0
    out = capsys.readouterr().out
    assert "l1 penalty (beta 0.1)" in out and "Adam, 3 epochs of batch 8" in out
    assert "vs rho" not in out                                 # no target activation for L1
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(OUTPUTS)
    model = train.SparseAutoencoder.load(out_dir / "mnist_model.npz")
    assert model.params_["W1"].dtype == np.float32
    assert model.penalty == "l1" and model.optimizer == "adam" and model.epochs == 3
    assert len(model.history_["step_cost"]) == 3 * 5


MODERN_OUTPUTS = ("mnist_model.npz", "mnist_filters.png", "mnist_training_curve.png", "mnist_density.png",
                  "mnist_reconstructions.png", "mnist_summary.txt")


@pytest.mark.parametrize("model, options", [("topk", ["--k", "3", "--aux-k", "4"]),
                                            ("relu_l1", ["--l1", "0.5"])])
def test_modern_models_end_to_end(tmp_path, monkeypatch, capsys, model, options):
    from saelab.training.loading import load_autoencoder
    from saelab.training.modern import ModernAutoencoder

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_split(data_dir, monkeypatch, split="train", n=40, seed=1)
    write_split(data_dir, monkeypatch, split="test", n=12, seed=2)
    out_dir = tmp_path / "out"
    status = train_mnist.main(["--data-dir", str(data_dir), "--examples", "40", "--test-examples", "12",
                               "--hidden", "9", "--model", model, *options, "--epochs", "2",
                               "--batch-size", "8", "--lr", "0.01", "--dtype", "float32",
                               "--out-dir", str(out_dir), "--quiet"])
    assert status == 0
    out = capsys.readouterr().out
    for part in ("L0 ", "normalized MSE", "dead latents", "Adam, 2 epochs of batch 8", "wall time"):
        assert part in out
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(MODERN_OUTPUTS)
    loaded = load_autoencoder(out_dir / "mnist_model.npz")
    assert type(loaded) is ModernAutoencoder and loaded.model == model
    assert loaded.lam == 0.0 and loaded.params_["W1"].dtype == np.float32
    X, _ = mnist.load_mnist(data_dir, "test", n=12, download_missing=False)
    metrics = loaded.metrics(X)
    assert f"normalized MSE {metrics['normalized_mse']:.4f}" in out


def test_missing_data_without_network_says_what_to_do(tmp_path, monkeypatch, capsys):
    def no_network(url, destination, timeout):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(mnist, "fetch", no_network)
    status = train_mnist.main(["--data-dir", str(tmp_path / "mnist"), "--out-dir", str(tmp_path / "out")])
    assert status == 1
    err = capsys.readouterr().err
    assert "train-images-idx3-ubyte.gz" in err and "--data-dir" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--hidden", "0"], "expected a positive integer"),
    (["--rho", "1.5"], "strictly between 0 and 1"),
    (["--lam", "-1"], "expected a finite number >= 0"),
    (["--optimizer", "sgd"], "invalid choice"),
    (["--examples", "60001"], "--examples: MNIST has 60000 images"),
    (["--model", "topk"], "--k: --model topk needs k"),
    (["--model", "topk", "--k", "300"], "--k: expected at most --hidden 196"),
    (["--model", "topk", "--k", "4", "--rho", "0.2"], "--rho: an option of the notes' model"),
    (["--model", "relu_l1", "--optimizer", "lbfgs"], "--optimizer: --model relu_l1 is trained with Adam"),
    (["--model", "relu_l1", "--animate"], "--animate: an option of the notes' model"),
    (["--k", "4"], "--k: an option of --model topk"),
    (["--model", "relu_l1", "--aux-k", "4"], "--aux-k: an option of --model topk"),
    (["--model", "topk", "--k", "4", "--l1", "2"], "--l1: an option of --model relu_l1"),
    (["--model", "kl", "--penalty", "l1"], "--penalty: --model kl is the notes' model"),
    (["--model", "gated"], "invalid choice"),
])
def test_bad_options_are_refused_by_argparse(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        train_mnist.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and [line for line in err.splitlines() if "error:" in line] == \
        [err.strip().splitlines()[-1]]                                 # the usage, then one line


def test_model_kl_and_l1_are_the_notes_model():
    args = train_mnist.parse_args(["--model", "l1"])
    assert args.penalty == "l1" and args.optimizer == "lbfgs" and args.lam == 3e-3
    args = train_mnist.parse_args(["--model", "topk", "--k", "8"])
    assert args.optimizer == "adam" and args.lam == 0.0
    assert train_mnist.parse_args(["--model", "topk", "--k", "8", "--lam", "0.1"]).lam == 0.1
    assert train_mnist.parse_args([]).model is None
