"""frontier.py: the --quick run end to end (real MNIST, and a tiny fake one), its table and
figures; benchmarks/bench.py --models."""

import json

import numpy as np
import pytest

from benchmarks import bench
import frontier
from conftest import MNIST_DIR
from test_mnist import write_split

OUTPUTS = ("frontier.png", "frontier_features.png", "frontier_density.png", "frontier_table.md",
           "frontier_results.json")


@pytest.fixture
def one_blas_thread():
    """One OpenBLAS thread during the test, as ``python frontier.py`` runs (its products are
    small, and two threads stall whenever another program holds a core); restored after."""
    threads, _ = bench.blas_runtime()
    changed = threads is not None and threads > 1 and bench.set_blas_threads(1)
    yield
    if changed:
        bench.set_blas_threads(threads)


def check_outputs(out_dir, expected_points):
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(OUTPUTS)
    results = json.loads((out_dir / "frontier_results.json").read_text())
    points = results["points"]
    assert len(points) == expected_points
    assert {p["family"] for p in points} == set(frontier.FAMILIES)
    for p in points:
        assert p["l0_label"] == ("L0 (a2 > 0.5)" if p["family"] in frontier.SIGMOID_FAMILIES else "L0")
        assert 0 <= p["l0"] <= p["n_hidden"] and p["normalized_mse"] > 0
        assert 0 <= p["dead_fraction"] <= 1
        fractions = np.array(p["firing_fractions"])
        assert fractions.shape == (p["n_hidden"],) and np.count_nonzero(fractions == 0) == p["dead_latents"]
    topk = [p for p in points if p["family"] == "topk"]
    assert any(p["aux_k"] for p in topk) and any(not p["aux_k"] for p in topk)
    assert sorted(str(p["aux_scale"]) for p in topk if p["aux_k"]) == ["1.0", "None"]   # both weights
    table = (out_dir / "frontier_table.md").read_text()
    assert table.count("\n") == expected_points + 2 and "(a2 > 0.5)" in table and "AuxK" in table
    assert "weight alpha alone: the earlier one" in table
    return results


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"real MNIST not found in {MNIST_DIR}")
def test_quick_run_on_real_mnist(tmp_path, capsys, one_blas_thread):
    out_dir = tmp_path / "frontier"
    assert frontier.main(["--data-dir", str(MNIST_DIR), "--quick", "--quiet",
                          "--out-dir", str(out_dir)]) == 0
    results = check_outputs(out_dir, expected_points=2 * 4 + 2)
    assert results["settings"]["quick"] and results["settings"]["hidden"] == 32
    out = capsys.readouterr().out
    assert "| TopK (Gao et al. 2024) | k = 4, AuxK (k_aux 16) |" in out and "wall time" in out


def test_quick_run_on_fake_mnist(tmp_path, monkeypatch, capsys, one_blas_thread):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_split(data_dir, monkeypatch, split="train", n=60, seed=1)
    write_split(data_dir, monkeypatch, split="test", n=20, seed=2)
    out_dir = tmp_path / "out"
    assert frontier.main(["--data-dir", str(data_dir), "--quick", "--quiet", "--examples", "60",
                          "--test-examples", "20", "--hidden", "8", "--out-dir", str(out_dir)]) == 0
    check_outputs(out_dir, expected_points=2 * 4 + 2)


def test_sweeps_and_settings():
    assert frontier.sweep("topk", False, 256) == (4, 8, 16, 32, 64)
    assert frontier.sweep("topk", False, 10) == (4, 8, 10)             # k capped at n_hidden
    assert frontier.sweep("kl_sigmoid", True, 32) == frontier.FAMILIES["kl_sigmoid"][3]
    args = frontier.build_parser().parse_args(["--quick", "--epochs", "3"])
    assert frontier.settings(args) == {**frontier.QUICK, "epochs": 3}
    args = frontier.build_parser().parse_args([])
    assert frontier.settings(args) == frontier.DEFAULTS


def test_table_rows_by_hand():
    points = [{"family": "kl_sigmoid", "parameter": "rho", "value": 0.1, "aux_k": None, "l0": 15.5,
               "normalized_mse": 0.25, "dead_latents": 3, "dead_fraction": 3 / 256, "n_hidden": 256,
               "train_seconds": 40.0},
              {"family": "topk", "parameter": "k", "value": 4, "aux_k": 128, "l0": 4.0,
               "normalized_mse": 0.3, "dead_latents": 0, "dead_fraction": 0.0, "n_hidden": 256,
               "train_seconds": 30.0}]
    lines = frontier.markdown_table(points).splitlines()
    assert lines[2] == ("| KL-sigmoid (the notes) | rho = 0.1 | 15.50 (a2 > 0.5) | 0.2500 "
                        "| 3 of 256 (1.2%) | 40.0 |")
    assert lines[3] == ("| TopK (Gao et al. 2024) | k = 4, AuxK (k_aux 128) | 4.00 | 0.3000 "
                        "| 0 of 256 (0.0%) | 30.0 |")
    earlier = frontier.markdown_table([{**points[1], "aux_scale": 1.0}]).splitlines()[2]
    assert "| k = 4, AuxK (k_aux 128, weight alpha alone: the earlier one) |" in earlier


def test_bench_times_the_modern_models_against_the_floor(capsys):
    assert bench.main(["--models", *bench.MODEL_CHOICES, "--shapes", "60x20x16", "--dtypes",
                       "float64", "--repeats", "1", "--warmup", "0"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0] for row in rows[1:]] == ["| relu_l1", "| topk", "| topk_auxk"]
    assert all("60 x 20 -> 16" in row for row in rows[1:])
    params, X, calls = bench.model_calls(["topk_auxk"], 30, 10, 8, np.float64, 0)
    cost, grads = calls["topk_auxk"]()
    assert np.isfinite(cost) and set(grads) == set(params)


# ---------------------------------------------------------------------------
# Issue 20: frontier.py keeps what it trained, marks what diverged, refuses early
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("argv, option", [
    (["--test-examples", "1"], "--test-examples"),
    (["--examples", "1"], "--examples"),
    (["--batch-size", "1"], "--batch-size"),
    (["--hidden", "100000000000"], "--hidden"),
    (["--examples", "60001"], "--examples"),
])
def test_what_a_run_would_fail_on_is_refused_in_one_line(argv, option, capsys, tmp_path):
    with pytest.raises(SystemExit) as info:
        frontier.main(["--quick", "--data-dir", str(tmp_path), *argv])
    assert info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert ": error: " + option in last, last


def test_outcome_drawable_and_the_note_of_what_is_not_drawn():
    def point(family, value, l0, nmse, status="done"):
        return {"family": family, "parameter": frontier.FAMILIES[family][1], "value": value,
                "aux_k": None, "l0": l0, "normalized_mse": nmse, "status": status}

    points = [point("topk", 4, 4.0, 0.4), point("relu_l1", 3, 0.0, 1.0),
              point("relu_l1", 1, 2.0, 3e34), point("topk", 8, 8.0, float("nan")),
              point("kl_sigmoid", 0.1, 5.0, 0.3, status="nonfinite")]
    for p in points:
        p["outcome"] = frontier.outcome(p)
    assert [p["outcome"] for p in points] == ["ok", "ok", "diverged", "diverged", "diverged"]
    assert frontier.drawable(points) == points[:1]
    note = frontier.left_out_note(points)
    assert "ReLU + L1 l1 = 3 (L0 = 0: no latent fires)" in note and note.count("(diverged)") == 3
    assert frontier.left_out_note(points[:1]) == ""


def test_a_diverging_family_keeps_every_output_and_exits_3(tmp_path, capsys, one_blas_thread):
    if not MNIST_DIR.is_dir():
        pytest.skip(f"real MNIST not found in {MNIST_DIR}")
    out_dir = tmp_path / "out"
    status = frontier.main(["--quick", "--quiet", "--data-dir", str(MNIST_DIR), "--out-dir",
                            str(out_dir), "--families", "kl_sigmoid", "relu_l1", "--lr", "1e8"])
    captured = capsys.readouterr()
    assert status == frontier.EXIT_RUN_FAILED
    points = json.loads((out_dir / "frontier_results.json").read_text())["points"]
    diverged = [p for p in points if p["outcome"] == "diverged"]
    assert {p["family"] for p in diverged} == {"relu_l1"} and len(diverged) == 2
    assert all(p["message"] for p in diverged)
    assert (out_dir / "frontier.png").stat().st_size > 0
    assert "(DIVERGED)" in (out_dir / "frontier_table.md").read_text()
    assert "2 of 4 runs diverged or failed" in captured.err
