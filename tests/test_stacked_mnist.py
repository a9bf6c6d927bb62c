"""stacked_mnist.py: the --quick run on real MNIST, its options, Ctrl-C, and the network's file."""

import io
import json
import os
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import stacked_autoencoder as sa
import stacked_mnist
from conftest import MNIST_DIR, ROOT
from saelab import experiment
from saelab.data import mnist
from saelab.files.stacked_file import load_stacked, save_stacked
from saelab.training.autoencoder import SparseAutoencoder
from test_plots import png_size

OUTPUTS = ("stacked_model.npz", "stacked_ae1.npz", "stacked_ae2.npz", "stacked_filters_before.png",
           "stacked_filters_after.png", "stacked_confusion.png", "stacked_accuracy.png",
           "stacked_summary.txt")


# ---------------------------------------------------------------------------
# The --quick run, end to end on real MNIST
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """(completed process, out dir) of `python stacked_mnist.py --quick` on real MNIST."""
    if not MNIST_DIR.is_dir():
        pytest.skip(f"real MNIST not found in {MNIST_DIR} (set MNIST_DIR to a folder with the "
                    f"four files to run the end-to-end test)")
    out_dir = tmp_path_factory.mktemp("stacked_quick")
    process = subprocess.run(
        [sys.executable, str(ROOT / "stacked_mnist.py"), "--data-dir", str(MNIST_DIR), "--quick",
         "--out-dir", str(out_dir)],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    return process, out_dir


def test_quick_run_writes_every_output(quick_run):
    process, out_dir = quick_run
    assert process.returncode == 0, process.stderr
    assert process.stderr == ""
    for name in OUTPUTS:
        assert (out_dir / name).is_file(), name
    for name in ("stacked_filters_before.png", "stacked_filters_after.png"):
        assert png_size(out_dir / name) == (2 * (15 * 28 + 16), 2 * (14 * 28 + 15))   # 200 tiles
    assert png_size(out_dir / "stacked_confusion.png") == (620, 560)
    assert png_size(out_dir / "stacked_accuracy.png") == (720, 520)
    for stage in ("[1/4] Pretraining autoencoder 1", "[2/4] Pretraining autoencoder 2",
                  "[3/4] Softmax regression", "[4/4] Fine-tuning", "iter  0/25", "iter 25/25"):
        assert stage in process.stdout, stage
    summary = (out_dir / "stacked_summary.txt").read_text()
    assert summary.strip() in process.stdout
    assert "UFLDL, reported (test)" in summary and "87.7%" in summary and "97.6%" in summary


def test_saved_network_predicts_the_accuracy_the_summary_reports(quick_run):
    _, out_dir = quick_run
    params, info = load_stacked(out_dir / "stacked_model.npz")
    assert info["finetuned"] and info["sizes"] == [784, 200, 200]
    X_test, y_test = mnist.load_mnist(MNIST_DIR, "test", n=stacked_mnist.QUICK["test_examples"],
                                      dtype=info["dtype"])               # as the run loaded them
    measured = float(np.mean(sa.predict(params, X_test) == y_test))
    assert measured == info["accuracy"]["test"]["after"]
    summary = (out_dir / "stacked_summary.txt").read_text()
    row = next(line for line in summary.splitlines() if "test images (500)" in line)
    assert row.split()[-1] == f"{measured:.2%}"
    assert row.split()[-2] == f"{info['accuracy']['test']['before']:.2%}"


def test_fine_tuning_lowered_the_training_cost(quick_run):
    _, out_dir = quick_run
    params, info = load_stacked(out_dir / "stacked_model.npz")
    costs = info["finetune_cost"]
    assert len(costs) == info["finetune_iterations"] + 1 == 26
    assert costs[-1] < 0.5 * costs[0]
    X, y = mnist.load_mnist(MNIST_DIR, "train", n=stacked_mnist.QUICK["examples"],
                            dtype=info["dtype"])
    final, _ = sa.cost_and_grad(params, X, y, lam=stacked_mnist.FINETUNE_LAM)
    assert final == pytest.approx(costs[-1], rel=1e-9)
    # The pretrained encoders are the saved autoencoders: fine-tuning started from them.
    ae1 = SparseAutoencoder.load(out_dir / "stacked_ae1.npz")
    ae2 = SparseAutoencoder.load(out_dir / "stacked_ae2.npz")
    assert ae1.params_["W1"].shape == (200, 784) and ae2.params_["W1"].shape == (200, 200)
    assert not np.array_equal(ae1.params_["W1"], params["stack"][0]["W"])


# ---------------------------------------------------------------------------
# Options: each bad one refused in one line, exit 2, naming it
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("argv, option", [
    (["--hidden"], "--hidden"),
    (["--hidden", "200", "0"], "--hidden"),
    (["--hidden", "100000000", "100"], "--hidden"),            # about 40 TB: beyond memory
    (["--examples", "60001"], "--examples"),
    (["--examples", "-5"], "--examples"),
    (["--test-examples", "10001"], "--test-examples"),
    (["--holdout", "500", "--quick"], "--holdout"),
    (["--finetune-iters", "0"], "--finetune-iters"),
    (["--ae-iters", "1.5"], "--ae-iters"),
    (["--softmax-iters", "x"], "--softmax-iters"),
    (["--seed", "-1"], "--seed"),
    (["--dtype", "float16"], "--dtype"),
    (["--data-dir", ""], "--data-dir"),
])
def test_bad_options_exit_2_naming_the_option(argv, option, capsys):
    with pytest.raises(SystemExit) as exc:
        stacked_mnist.parse_args(argv)
    assert exc.value.code == 2
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert last_line.startswith("stacked_mnist.py: error:") or "error:" in last_line
    assert option in last_line


def test_out_dir_that_is_a_file_or_holds_a_folder_of_an_output_name(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    (tmp_path / "stacked_model.npz").mkdir()
    for argv in (["--out-dir", str(tmp_path / "file")], ["--out-dir", str(tmp_path)]):
        with pytest.raises(SystemExit) as exc:
            stacked_mnist.parse_args(argv)
        assert exc.value.code == 2
        assert "--out-dir" in capsys.readouterr().err


def test_quick_defaults_and_explicit_options():
    args = stacked_mnist.parse_args(["--quick", "--finetune-iters", "7"])
    assert (args.examples, args.finetune_iters) == (stacked_mnist.QUICK["examples"], 7)
    args = stacked_mnist.parse_args(["--hidden", "50", "40", "30"])
    assert args.hidden == [50, 40, 30]
    assert (args.examples, args.ae_iters, args.finetune_iters) == (60_000, 400, 400)


def test_missing_data_exits_1(tmp_path, capsys, monkeypatch):
    def offline(url, destination, timeout):
        raise OSError("no network in the tests")

    monkeypatch.setattr(mnist, "fetch", offline)
    status = stacked_mnist.main(["--quick", "--data-dir", str(tmp_path / "none"),
                                 "--out-dir", str(tmp_path / "out")])
    assert status == 1
    assert capsys.readouterr().err.startswith("error: MNIST file(s) missing")


# ---------------------------------------------------------------------------
# run() on stand-in data: three layers, Ctrl-C in pretraining and in fine-tuning
# ---------------------------------------------------------------------------


def stand_in_data(m=120, m_test=60, seed=0):
    """Stand-in "digits": ten random templates in [0, 1], each image one of them plus noise."""
    rng = np.random.default_rng(seed)
    templates = rng.random((10, 784)) ** 3

    def images(n):
        y = rng.integers(0, 10, n)
        return 0.6 * templates[y] + 0.4 * rng.random((n, 784)) ** 3, y

    data = {}
    for name, n in (("train", m), ("holdout", 20), ("test", m_test)):
        data[f"{name}_X"], data[f"{name}_y"] = images(n)
    return data


def quick_args(tmp_path, *more):
    return stacked_mnist.parse_args(["--quick", "--quiet", "--out-dir", str(tmp_path),
                                     "--hidden", "30", "20", "15", *more])


def test_any_number_of_layers_and_the_held_out_images(tmp_path):
    result, paths, status = stacked_mnist.run(quick_args(tmp_path), stand_in_data(),
                                              stream=io.StringIO())
    assert status == 0
    params, info = load_stacked(paths["model"])
    assert info["sizes"] == [784, 30, 20, 15] and len(params["stack"]) == 3
    assert set(result["accuracy"]) == {"test", "train", "holdout"}
    assert {"ae1", "ae2", "ae3", "summary", "confusion"} <= set(paths)
    assert "held-out training images (20)" in paths["summary"].read_text()


class InterruptedAutoencoder(SparseAutoencoder):
    """A Ctrl-C as the second autoencoder starts training."""

    def fit(self, X, **kwargs):
        if X.shape[1] == 30:
            os.kill(os.getpid(), signal.SIGINT)
        return super().fit(X, **kwargs)


def test_ctrl_c_in_pretraining_saves_the_autoencoders_reached(tmp_path, monkeypatch):
    monkeypatch.setattr(stacked_mnist, "SparseAutoencoder", InterruptedAutoencoder)
    stream = io.StringIO()
    result, paths, status = stacked_mnist.run(quick_args(tmp_path), stand_in_data(), stream=stream)
    assert status == experiment.EXIT_INTERRUPTED == 130
    assert (result["stopped"], result["stopped_in"]) == ("interrupted", "autoencoder 2")
    assert result["autoencoders"][1].history_["iteration"][-1] == 1     # stopped after 1 step
    assert set(paths) == {"ae1", "ae2", "filters_before", "summary"}    # no network: no softmax
    assert not (tmp_path / "stacked_model.npz").exists()
    assert "Interrupted by Ctrl-C in autoencoder 2" in stream.getvalue()
    assert "NOTE: interrupted by Ctrl-C" in paths["summary"].read_text()


def test_ctrl_c_in_fine_tuning_saves_the_network_reached(tmp_path, monkeypatch):
    real = stacked_mnist.finetune

    def interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(stacked_mnist, "finetune", interrupted)
    result, paths, status = stacked_mnist.run(quick_args(tmp_path), stand_in_data(),
                                              stream=io.StringIO())
    assert status == 130 and result["stopped_in"] == "fine-tuning"
    params, info = load_stacked(paths["model"])
    assert info["finetuned"] and info["finetune_iterations"] == 1
    assert set(paths) == {"model", "ae1", "ae2", "ae3", "filters_before", "filters_after",
                          "confusion", "accuracy", "summary"}
    for stage in ("before", "after"):
        assert stage in result["accuracy"]["test"]


def test_a_failed_output_is_reported_and_the_others_written(tmp_path, monkeypatch, capsys):
    from saelab.figures import plots

    def broken(*args, **kwargs):
        raise RuntimeError("no figure today")

    monkeypatch.setattr(plots, "save_confusion_matrix", broken)
    result, paths, status = stacked_mnist.run(quick_args(tmp_path), stand_in_data(),
                                              stream=io.StringIO())
    assert status == experiment.EXIT_OUTPUT_FAILED == 4
    assert "confusion" not in paths and "model" in paths and "summary" in paths
    err = capsys.readouterr().err
    assert "error: the confusion matrix:" in err and "no figure today" in err


# ---------------------------------------------------------------------------
# Fine-tuning itself
# ---------------------------------------------------------------------------


def test_finetune_lowers_the_cost_and_leaves_its_start_alone():
    rng = np.random.default_rng(3)
    params = sa.init_stacked_params([12, 8, 6], 3, rng)
    start = sa.pack(params).copy()
    X, y = rng.random((40, 12)), rng.integers(0, 3, 40)
    trained, history = stacked_mnist.finetune(params, X, y, max_iter=30)
    assert np.array_equal(sa.pack(params), start)
    assert history["status"] == "done" and history["iteration"][-1] <= 30
    assert history["cost"][-1] < history["cost"][0]
    assert np.all(np.diff(history["cost"]) <= 1e-12)                 # L-BFGS-B never goes up
    assert sa.cost_and_grad(trained, X, y)[0] == pytest.approx(history["cost"][-1], rel=1e-12)


def test_finetune_stops_when_the_callback_says_so():
    rng = np.random.default_rng(4)
    params = sa.init_stacked_params([12, 8], 3, rng, dtype=np.float32, bias=False)
    X, y = rng.random((40, 12)), rng.integers(0, 3, 40)
    seen = []

    def callback(step):
        seen.append(step)
        return step.iteration == 3

    trained, history = stacked_mnist.finetune(params, X, y, max_iter=50, callback=callback)
    assert history["status"] == "stopped" and history["iteration"][-1] == 3
    assert trained["stack"][0]["W"].dtype == np.float32 and "b" not in trained["softmax"]
    assert np.array_equal(sa.pack(trained), sa.pack(seen[-1].params))


# ---------------------------------------------------------------------------
# The network's file: round trip, and refusal of everything else
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("sizes, dtype, bias", [([6, 4], np.float64, True),
                                                ([9, 7, 5, 3], np.float32, False)])
def test_network_file_round_trip(tmp_path, sizes, dtype, bias):
    params = sa.init_stacked_params(sizes, 4, 0, dtype=dtype, bias=bias)
    info = {"accuracy": {"test": {"after": 0.976}}, "sizes": sizes, "note": None}
    path = save_stacked(tmp_path / "net.npz", params, info=info)
    loaded, loaded_info = load_stacked(path)
    assert loaded_info == info
    assert sa.pack(loaded).dtype == dtype
    assert np.array_equal(sa.pack(loaded), sa.pack(params))
    X = np.random.default_rng(1).random((5, sizes[0]))
    assert np.array_equal(sa.predict(loaded, X), sa.predict(params, X))


def test_saving_refuses_what_loading_would_refuse_and_writes_nothing(tmp_path):
    params = sa.init_stacked_params([6, 4], 3, 0)
    path = tmp_path / "net.npz"
    bad = sa.init_stacked_params([6, 4], 3, 0)
    bad["stack"][0]["W"][0, 0] = np.nan
    with pytest.raises(ValueError, match=r"params\['stack'\]\[0\]\['W'\] holds NaN"):
        save_stacked(path, bad)
    with pytest.raises(ValueError, match="info: does not read back equal"):
        save_stacked(path, params, info={"sizes": (6, 4)})
    with pytest.raises(ValueError, match="info: expected a dict of JSON values"):
        save_stacked(path, params, info={"x": float("nan")})
    with pytest.raises(TypeError, match="info: expected a dict"):
        save_stacked(path, params, info=[1])
    mixed = sa.init_stacked_params([6, 4], 3, 0)
    mixed["softmax"]["b"] = mixed["softmax"]["b"].astype(np.float32)
    with pytest.raises(TypeError, match=r"params\['softmax'\]\['b'\]"):
        save_stacked(path, mixed)
    assert list(tmp_path.iterdir()) == []


def rewrite(path, change):
    """Rewrite the .npz at path with its members changed by change(dict of name -> bytes)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    change(members)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


def npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_loading_refuses_foreign_and_corrupt_files_naming_them(tmp_path):
    params = sa.init_stacked_params([6, 4, 3], 3, 0)
    good = save_stacked(tmp_path / "good.npz", params)
    data = good.read_bytes()
    autoencoder = SparseAutoencoder(4, max_iter=2).fit(np.random.default_rng(0).random((10, 6)),
                                                       progress=False)
    cases = {"autoencoder.npz": lambda p: autoencoder.save(p),
             "text.npz": lambda p: p.write_text("hello"),
             "empty.npz": lambda p: p.write_bytes(b""),
             "array.npy": lambda p: np.save(p, np.zeros(3)),
             "truncated.npz": lambda p: p.write_bytes(data[: len(data) // 2]),
             "flipped.npz": lambda p: p.write_bytes(data[:200] + bytes([data[200] ^ 0xFF])
                                                    + data[201:])}
    expected = {"autoencoder.npz": "holds a sparse autoencoder.*SparseAutoencoder.load",
                "text.npz": "not a zip archive", "empty.npz": "the file is empty",
                "array.npy": "a single .npy array", "truncated.npz": "stacked model file",
                "flipped.npz": "stacked model file"}
    for name, make in cases.items():
        path = tmp_path / name
        make(path)
        with pytest.raises(ValueError, match=expected[name]) as exc:
            load_stacked(path)
        assert str(path) in str(exc.value)

    def variant(name, change):
        path = tmp_path / name
        path.write_bytes(data)
        rewrite(path, change)
        return path

    refusals = [
        (lambda m: m.update({"stacked_format_version.npy": npy_bytes(np.array(2))}),
         "format version 2"),
        (lambda m: m.pop("stack_1_b.npy"), "missing stack_1_b"),
        (lambda m: m.update({"stack_5_W.npy": npy_bytes(np.zeros((2, 2)))}),
         r"missing stack_2_W, stack_2_b, stack_3_W, stack_3_b, \.\.\. \(7 in all\)"),
        (lambda m: [m.pop(f"stack_{k}_{p}.npy") for k in (0, 1) for p in "Wb"],
         "missing the encoders"),
        (lambda m: m.update({"extra.npy": npy_bytes(np.zeros(2))}), "'extra' is not one"),
        (lambda m: m.update({"stack_0_W.npy": npy_bytes(np.zeros((5, 6)))}),
         r"params\['stack'\]\[0\]\['b'\]: expected shape \(5,\)"),
        (lambda m: m.update({"stack_0_b.npy": npy_bytes(np.array([np.inf, 0, 0, 0]))}),
         "NaN or infinite"),
        (lambda m: m.update({"softmax_W.npy": npy_bytes(np.array([None, 1], dtype=object))}),
         "dtype object"),
        (lambda m: m.update({"info.npy": npy_bytes(np.array("[1, 2]"))}), "expected a dict"),
        (lambda m: m.update({"info.npy": npy_bytes(np.array("{not json"))}), "not valid JSON"),
        (lambda m: m.update({"softmax_W.npy": npy_bytes(np.zeros((3, 3)))[:-8]}),
         "its header says"),
    ]
    for i, (change, message) in enumerate(refusals):
        path = variant(f"variant{i}.npz", change)
        with pytest.raises(ValueError, match=message):
            load_stacked(path)
    with pytest.raises(FileNotFoundError):
        load_stacked(tmp_path / "absent.npz")
    with pytest.raises(ValueError, match="is a folder"):
        load_stacked(tmp_path)


def test_a_header_that_lies_about_its_size_allocates_nothing(tmp_path):
    path = save_stacked(tmp_path / "net.npz", sa.init_stacked_params([6, 4], 3, 0))
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (300_000_000, 400_000_000)})
    huge = header.getvalue() + bytes(96)                # 960 PB claimed, 96 bytes held
    rewrite(path, lambda m: m.update({"softmax_W.npy": huge}))
    with pytest.raises(ValueError, match="its header says"):
        load_stacked(path)


def test_info_written_by_the_script_is_plain_json():
    args = stacked_mnist.parse_args(["--quick"])
    params = sa.init_stacked_params([784, 4], 10, 0)
    data = stand_in_data()
    result = {"finetune_history": None, "params_after": None, "accuracy": {"test": {"before": 0.5}},
              "seconds": {"loading": 1.0}}
    info = stacked_mnist.network_info(args, data, result, params)
    assert json.loads(json.dumps(info)) == info and info["finetuned"] is False
