"""The gradient checker (library and command), tested on itself and on broken gradients."""

import subprocess
import sys

import numpy as np
import pytest

import gradcheck
import sparse_autoencoder as sae
from conftest import ROOT


# ---------------------------------------------------------------------------
# numerical_gradient and relative_difference
# ---------------------------------------------------------------------------


def test_checker_on_the_exercise_quadratic():
    numerical, diff = gradcheck.check_the_checker()
    np.testing.assert_allclose(numerical, [38.0, 12.0], rtol=1e-10)
    assert diff == pytest.approx(2.1452e-12, rel=1e-4)      # UFLDL's value for eps = 1e-4


def test_numerical_gradient_of_a_known_function():
    # f(t) = sum(sin(t)) + t0 t1, gradient cos(t) + (t1, t0, 0, ...)
    theta = np.array([0.3, -1.2, 2.5, 0.0])
    exact = np.cos(theta) + np.array([theta[1], theta[0], 0.0, 0.0])
    numerical = gradcheck.numerical_gradient(lambda t: np.sin(t).sum() + t[0] * t[1], theta)
    assert numerical.shape == theta.shape and numerical.dtype == theta.dtype
    assert gradcheck.relative_difference(numerical, exact) < 1e-9


def test_numerical_gradient_restores_theta_exactly_and_moves_one_coordinate():
    # Values where x + eps - eps != x in floating point.
    theta = np.array([0.1, 1 / 3, 1e8 + 0.3, -7.77e-5, 12345.678])
    original = theta.copy()
    calls = []

    def f(t):
        calls.append(t.copy())
        return float(t @ t)

    gradcheck.numerical_gradient(f, theta, eps=1e-4)
    assert theta.tobytes() == original.tobytes()
    assert len(calls) == 2 * theta.size
    for k, seen in enumerate(calls):
        i = k // 2
        changed = np.flatnonzero(seen != original)
        assert changed.tolist() == [i]
        step = 1e-4 if k % 2 == 0 else -1e-4
        assert seen[i] == original[i] + step


@pytest.mark.parametrize("theta, eps, name", [
    (np.zeros((2, 2)), 1e-4, "theta"),
    ([1.0, 2.0], 1e-4, "theta"),
    (np.arange(3), 1e-4, "theta"),
    (np.zeros(3), 0.0, "eps"),
    (np.zeros(3), float("nan"), "eps"),
])
def test_numerical_gradient_rejects_bad_input(theta, eps, name):
    with pytest.raises(ValueError, match=f"^{name}:"):
        gradcheck.numerical_gradient(lambda t: 0.0, theta, eps)


def test_relative_difference():
    a = np.array([1.0, 2.0, 3.0])
    assert gradcheck.relative_difference(a, a) == 0.0
    assert gradcheck.relative_difference(np.zeros(3), np.zeros(3)) == 0.0
    b = a + np.array([0.0, 0.0, 1e-6])
    expected = 1e-6 / np.linalg.norm(a + b)
    assert gradcheck.relative_difference(a, b) == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ValueError, match="a, b"):
        gradcheck.relative_difference(a, np.zeros(2))


# ---------------------------------------------------------------------------
# check_gradient and the stages
# ---------------------------------------------------------------------------


def test_check_gradient_reports_the_broken_block():
    params, X = gradcheck.make_problem(4, 3, 5, seed=1)
    n_hidden, n_visible = params["W1"].shape

    def broken(p):
        cost, grads = sae.cost_and_grad(p, X, penalty="kl", rho=0.1, beta=3.0, lam=0.03)
        grads["b1"] = grads["b1"] * 1.001
        return cost, grads

    check = gradcheck.check_gradient(
        broken, sae.pack(params), lambda t: sae.unpack(t, n_visible, n_hidden))
    assert check.relative_difference > 1e-5
    assert max(check.max_abs_error, key=check.max_abs_error.get) == "b1"
    assert max(check.max_abs_error[n] for n in ("W1", "W2", "b2")) < 1e-8


def test_check_gradient_rejects_a_gradient_of_the_wrong_shape():
    params, X = gradcheck.make_problem(4, 3, 5, seed=1)

    def wrong_shape(p):
        cost, grads = sae.cost_and_grad(p, X)
        grads["W1"] = grads["W1"].T
        return cost, grads

    with pytest.raises(ValueError, match=r"grads\['W1'\]"):
        gradcheck.check_gradient(wrong_shape, sae.pack(params), lambda t: sae.unpack(t, 4, 3))


def test_make_problem_keeps_rho_hat_away_from_0_and_1():
    params, X = gradcheck.make_problem()
    rho_hat = sae.encode(params, X).mean(axis=0)
    assert 0.1 < rho_hat.min() and rho_hat.max() < 0.9
    assert X.shape == (10, 8) and X.min() >= 0 and X.max() <= 1
    assert np.all(params["b1"] != 0) and np.all(params["b2"] != 0)


def test_stages_cover_the_ufldl_sequence():
    settings = {stage.name: stage.settings for stage in gradcheck.AUTOENCODER_STAGES}
    assert settings["reconstruction only"]["penalty"] == "none"
    assert settings["reconstruction only"]["lam"] == 0
    assert settings["+ weight decay"]["lam"] > 0
    assert settings["+ KL sparsity"]["penalty"] == "kl"
    assert settings["L1 sparsity"]["penalty"] == "l1"
    assert settings["linear decoder"]["decoder"] == "linear"
    together = settings["everything together"]
    assert (together["penalty"], together["decoder"]) == ("kl", "linear") and together["lam"] > 0


def test_real_model_passes_every_stage():
    params, X = gradcheck.make_problem()
    results = gradcheck.run_stages(sae.cost_and_grad, params, X)
    assert [stage.name for stage, _ in results] == [s.name for s in gradcheck.STAGES]
    assert gradcheck.failing_stages(results) == []
    for stage, check in results:
        blocks = {"W", "b"} if stage.name == "softmax regression" else set(sae.PARAM_NAMES)
        assert set(check.max_abs_error) == blocks
        assert max(check.max_abs_error.values()) < 1e-8


def test_a_stage_for_another_model_fits_the_list():
    """Later stages (softmax) bring their own cost: a stage only needs name, settings, check."""

    class QuadraticStage:
        name = "quadratic model"
        settings = {"a": 2.0}

        def check(self, cost_fn, params, X, eps):
            def objective(p):                       # J = a/2 ||w||^2 + sum(b), dJ/dw = a w
                w, b = p["w"], p["b"]
                return self.settings["a"] / 2 * w @ w + b.sum(), {"w": 2.0 * w, "b": np.ones(2)}
            theta = np.array([1.0, -2.0, 0.5, 0.25])
            return gradcheck.check_gradient(objective, theta,
                                            lambda t: {"w": t[:2], "b": t[2:]}, eps)

    params, X = gradcheck.make_problem()
    stages = [gradcheck.STAGES[0], QuadraticStage()]
    results = gradcheck.run_stages(sae.cost_and_grad, params, X, stages)
    assert gradcheck.failing_stages(results) == []
    table = gradcheck.format_table(results)
    assert "quadratic model" in table and "a=2" in table
    assert table.splitlines()[0].split()[-6:] == ["W1", "b1", "W2", "b2", "w", "b"]


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------


def test_main_exits_0_on_the_real_model(capsys):
    assert gradcheck.main([]) == 0
    out = capsys.readouterr().out
    assert "2.1452e-12" in out
    for stage in gradcheck.STAGES:
        row = next(line for line in out.splitlines() if line.startswith(stage.name + "  "))
        assert row.rstrip().endswith("ok")
    assert f"all {len(gradcheck.STAGES)} stages below 1e-09" in out


def _without_weight_decay_on_W1(params, X, **settings):
    """A plausible bug: the lam * W1 term of dJ/dW1 forgotten."""
    cost, grads = sae.cost_and_grad(params, X, **settings)
    grads["W1"] = grads["W1"] - settings.get("lam", 1e-4) * params["W1"]
    return cost, grads


def _with_a_tiny_error_in_b2(params, X, **settings):
    """dJ/db2 off by one part in a million: still caught."""
    cost, grads = sae.cost_and_grad(params, X, **settings)
    grads["b2"] = grads["b2"] * (1 + 1e-6)
    return cost, grads


@pytest.mark.parametrize("broken, expected_failures", [
    (_without_weight_decay_on_W1,
     [s.name for s in gradcheck.AUTOENCODER_STAGES if s.settings["lam"] > 0]),
    (_with_a_tiny_error_in_b2, [s.name for s in gradcheck.AUTOENCODER_STAGES]),
])
@pytest.mark.parametrize("eps", ["1e-4", "1e-5"])       # the hint's smaller step still fails
def test_main_exits_1_naming_the_failing_stages(capsys, broken, expected_failures, eps):
    assert 0 < len(expected_failures)
    assert gradcheck.main(["--seed", "3", "--eps", eps], cost_fn=broken) == 1
    captured = capsys.readouterr()
    failed_line = next(line for line in captured.err.splitlines() if line.startswith("FAILED"))
    assert failed_line.split(" for: ", 1)[1] == ", ".join(expected_failures)
    for stage in gradcheck.STAGES:
        row = next(line for line in captured.out.splitlines() if line.startswith(stage.name + "  "))
        assert row.rstrip().endswith("FAIL" if stage.name in expected_failures else "ok")


def test_command_line_run_exits_0():
    result = subprocess.run([sys.executable, "gradcheck.py", "--examples", "4"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 examples" in result.stdout


def test_help_explains_every_option():
    result = subprocess.run([sys.executable, "gradcheck.py", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for option in ("--visible", "--hidden", "--examples", "--seed", "--eps"):
        assert option in result.stdout
    assert "1e-09" in result.stdout


@pytest.mark.parametrize("argv, option", [
    (["--visible", "0"], "--visible"),
    (["--hidden", "two"], "--hidden"),
    (["--examples", "-3"], "--examples"),
    (["--seed", "-1"], "--seed"),
    (["--eps", "0"], "--eps"),
    (["--eps", "inf"], "--eps"),
])
def test_bad_options_are_rejected_by_name(capsys, argv, option):
    with pytest.raises(SystemExit) as excinfo:
        gradcheck.main(argv)
    assert excinfo.value.code == 2
    assert f"argument {option}:" in capsys.readouterr().err
