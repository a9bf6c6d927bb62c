"""The gradient checker (library and command), tested on itself and on broken gradients."""

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fast
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
    stacked_blocks = {"W^(l)", "b^(l)", "theta", "b"}
    for stage, check in results:
        blocks = ({"W", "b"} if stage.name == "softmax regression" else
                  stacked_blocks - ({"b"} if stage.settings.get("bias") is False else set())
                  if stage in gradcheck.STACKED_STAGES else set(sae.PARAM_NAMES))
        assert set(check.max_abs_error) == blocks
        assert max(check.max_abs_error.values()) < 1e-8


def test_real_model_passes_every_stage_and_keeps_j_and_the_pairs():
    params, X = gradcheck.make_problem()
    for cost_fn in (sae.cost_and_grad, fast.cost_and_grad):
        for stage, check in gradcheck.run_stages(cost_fn, params, X, gradcheck.AUTOENCODER_STAGES):
            assert check.cost == pytest.approx(cost_fn(params, X, **stage.settings)[0], rel=1e-12)
            assert set(check.numerical) == set(check.analytic) == set(sae.PARAM_NAMES)
            for name in sae.PARAM_NAMES:
                assert check.numerical[name].shape == params[name].shape
                np.testing.assert_allclose(check.numerical[name], check.analytic[name], atol=1e-8)


def test_numerical_gradient_restores_theta_when_f_raises():
    theta = np.array([0.1, 1 / 3, 2.5])
    original = theta.copy()

    def f(t):
        if t[1] != original[1]:
            raise RuntimeError("boom")
        return float(t.sum())

    with pytest.raises(RuntimeError):
        gradcheck.numerical_gradient(f, theta)
    assert theta.tobytes() == original.tobytes()


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
    assert "quadratic model" in table
    assert table.splitlines()[0].split()[-6:] == ["W1", "b1", "W2", "b2", "w", "b"]
    assert "a=2" in gradcheck.format_settings(stages)


# ---------------------------------------------------------------------------
# A function that raises or returns the wrong thing: one StageError per stage
# ---------------------------------------------------------------------------


def _returning(value):
    return lambda params, X, **settings: value


def _grads_with(change):
    def cost_fn(params, X, **settings):
        cost, grads = sae.cost_and_grad(params, X, **settings)
        return cost, change(grads)
    return cost_fn


def _raising_not_implemented(params, X, **settings):
    raise NotImplementedError("delta2 (m, n_hidden)")


RAISING_LINE = _raising_not_implemented.__code__.co_firstlineno + 1


@pytest.mark.parametrize("cost_fn, reason", [
    (_raising_not_implemented,
     f"NotImplementedError: delta2 (m, n_hidden) (test_gradcheck.py:{RAISING_LINE})"),
    (_returning(None), "returned None (a missing return?), expected a tuple (cost, grads)"),
    (_returning((1.0, {}, 3)), "returned a tuple of 3, expected a tuple (cost, grads)"),
    (_returning([1.0, {}]), "returned list, expected a tuple (cost, grads)"),
    (_returning(("1.0", {})), "returned cost of type str, expected a finite number"),
    (_returning((float("nan"), {})), "returned cost nan, expected a finite number"),
    (_returning((1.0, [1, 2])), "returned grads of type list, expected a dict with keys W1, b1, W2, b2"),
    (_grads_with(lambda g: {k: g[k] for k in ("W1", "b1", "W2")}),
     "returned grads with keys W1, b1, W2, expected W1, b1, W2, b2"),
    (_grads_with(lambda g: {**g, "W1": g["W1"].T}),
     "returned grads['W1'] of shape (8, 5), not W1's shape (5, 8)"),
    (_grads_with(lambda g: {**g, "b2": g["b2"] * np.nan}),
     "returned grads['b2'] with NaN or infinite values"),
    (_grads_with(lambda g: {**g, "b1": g["b1"].astype(str)}),
     "returned grads['b1'] of dtype <U32, expected real numbers"),
])
def test_a_broken_function_gets_one_line_per_stage(cost_fn, reason):
    params, X = gradcheck.make_problem()
    results = gradcheck.run_stages(cost_fn, params, X, gradcheck.AUTOENCODER_STAGES)
    assert [check.reason for _, check in results] == [reason] * len(gradcheck.AUTOENCODER_STAGES)
    assert gradcheck.failing_stages(results) == [s.name for s in gradcheck.AUTOENCODER_STAGES]
    table = gradcheck.format_table(results).splitlines()      # no numbers: no column heads
    assert len(table) == len(gradcheck.AUTOENCODER_STAGES)
    for stage, line in zip(gradcheck.AUTOENCODER_STAGES, table):
        assert re.fullmatch(rf"{re.escape(stage.name)} +FAILED: {re.escape(reason)}", line)


def test_a_cost_that_turns_nan_away_from_the_parameters_is_one_line():
    def nan_when_moved(params, X, **settings):
        cost, grads = sae.cost_and_grad(params, X, **settings)
        return (cost if params["W1"][0, 0] == start else float("nan")), grads

    params, X = gradcheck.make_problem()
    start = params["W1"][0, 0]
    (_, check), = gradcheck.run_stages(nan_when_moved, params, X, gradcheck.STAGES[:1])
    assert check.reason == "returned cost nan at a perturbed theta, expected a finite number"


def test_numpy_floating_point_errors_name_their_line():
    def log_of_zero(params, X, **settings):
        return float(np.log(np.zeros(1))[0]), {}

    params, X = gradcheck.make_problem()
    (_, check), = gradcheck.run_stages(log_of_zero, params, X, gradcheck.STAGES[:1])
    line = log_of_zero.__code__.co_firstlineno + 1
    assert check.reason == (f"FloatingPointError: divide by zero encountered in log "
                            f"(test_gradcheck.py:{line})")


def test_a_long_reason_is_cut_to_the_line_width_keeping_the_place():
    def long_message(params, X, **settings):
        raise ValueError("x" * 300)

    params, X = gradcheck.make_problem()
    results = gradcheck.run_stages(long_message, params, X, gradcheck.STAGES[:1])
    lines = gradcheck.format_table(results).splitlines()
    assert all(len(line) <= gradcheck.LINE_WIDTH for line in lines)
    assert any(re.search(r"x+\.\.\.$", line) for line in lines)      # the one long word, cut
    assert re.search(r"\(test_gradcheck\.py:\d+\)$", lines[-1])         # the place kept


def test_a_long_message_of_words_is_wrapped_whole():
    # NumPy's broadcast errors name the shapes, the useful part: nothing is cut.
    message = "operands could not be broadcast together with shapes (10,5) (10,) " * 3

    def broadcast_error(params, X, **settings):
        raise ValueError(message.strip())

    params, X = gradcheck.make_problem()
    results = gradcheck.run_stages(broadcast_error, params, X, gradcheck.STAGES[:1])
    lines = gradcheck.format_table(results).splitlines()
    assert len(lines) > 1 and all(len(line) <= gradcheck.LINE_WIDTH for line in lines)
    assert lines[0].startswith("reconstruction only") and "FAILED: ValueError:" in lines[0]
    indent = lines[0].index("ValueError")
    assert all(line[:indent].isspace() for line in lines[1:])
    assert " ".join(line.strip() for line in lines).count("(10,5) (10,)") == 3
    assert re.search(r"\(test_gradcheck\.py:\d+\)$", lines[-1])


def test_near_threshold_stages():
    class Result:
        def __init__(self, diff):
            self.relative_difference = diff

    stages = [gradcheck.Stage(name) for name in "abcde"]
    diffs = [5e-10, 1e-9, 9.9e-9, 1e-8, 1e-1]
    results = [(stage, Result(d)) for stage, d in zip(stages, diffs)]
    assert gradcheck.failing_stages(results) == ["b", "c", "d", "e"]
    assert gradcheck.near_threshold_stages(results) == ["b", "c"]


# ---------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------


def _sections(out):
    """The tables of the command's output: {section label: {stage name: row}}."""
    sections, label, rows = {}, None, None
    lines = out.splitlines()
    for at, line in enumerate(lines):
        if line.startswith("stage  "):
            while lines[at - 1].startswith("  "):             # a section's own settings lines
                at -= 1
            label, rows = lines[at - 1], {}
            sections[label] = rows
        elif not line:
            rows = None
        elif rows is not None and not line.startswith("  "):  # not --show pairs, not notes
            name = next(s.name for s in gradcheck.STAGES if line.startswith(s.name + "  "))
            rows[name] = line
    return sections


AE_NAMES = [s.name for s in gradcheck.AUTOENCODER_STAGES]
READABLE = "sparse_autoencoder.cost_and_grad (readable)"
TUNED = "fast.cost_and_grad (tuned)"
SOFTMAX = "softmax.softmax_cost_and_grad (the classifier of self_taught.py)"
MODERN = gradcheck.MODERN_TITLE
MODERN_NAMES = ["ReLU + L1", "TopK", "TopK + AuxK"]
STACKED = gradcheck.STACKED_TITLE
STACKED_NAMES = ["two encoders", "no softmax bias", "three encoders"]


def test_main_by_default_checks_the_notes_model_alone_in_about_25_lines(capsys):
    assert gradcheck.main([]) == 0
    out = capsys.readouterr().out
    assert "2.1452e-12" in out
    sections = _sections(out)
    assert list(sections) == [READABLE]
    assert list(sections[READABLE]) == AE_NAMES
    assert all(row.endswith("  ok") for row in sections[READABLE].values())
    assert len(out.splitlines()) <= 26
    assert out.strip().splitlines()[-1] == ("all 6 stages below 1e-09; the other sections: "
                                            "--section NAME or --all")


@pytest.mark.parametrize("argv, labels", [
    (["--section", "fast"], [TUNED]),
    (["--section", "modern", "--section", "softmax"], [MODERN, SOFTMAX]),
    (["--section", "stacked", "--section", "stacked"], [STACKED]),
])
def test_sections_by_name(capsys, argv, labels):
    assert gradcheck.main(argv) == 0
    out = capsys.readouterr().out
    assert list(_sections(out)) == labels
    assert ("the stages (one term at a time" in out) == (labels == [TUNED])


def test_cost_with_a_section_is_refused(capsys):
    with pytest.raises(SystemExit) as info:
        gradcheck.main(["--cost", "exercise.py:cost_and_grad", "--all"])
    assert info.value.code == 2
    assert "--cost" in capsys.readouterr().err.splitlines()[-1]


def test_all_checks_readable_tuned_softmax_modern_and_stacked(capsys):
    assert gradcheck.main(["--all"]) == 0
    out = capsys.readouterr().out
    assert "2.1452e-12" in out
    sections = _sections(out)
    assert list(sections) == [READABLE, TUNED, SOFTMAX, MODERN, STACKED]
    assert list(sections[READABLE]) == list(sections[TUNED]) == AE_NAMES
    assert list(sections[SOFTMAX]) == ["softmax regression"]
    assert list(sections[MODERN]) == MODERN_NAMES
    assert list(sections[STACKED]) == STACKED_NAMES
    for rows in sections.values():
        for row in rows.values():
            assert row.endswith("  ok")
    header = next(line for line in out.splitlines() if line.startswith("stage"))
    assert header.split() == ["stage", "J", "rel.", "diff", "W1", "b1", "W2", "b2"]
    # The same J from both, printed on each row.
    for name in AE_NAMES:
        assert sections[READABLE][name].split()[-7] == sections[TUNED][name].split()[-7]
    n_stages = 2 * len(AE_NAMES) + 1 + len(MODERN_NAMES) + len(STACKED_NAMES)
    assert out.strip().splitlines()[-1] == f"all {n_stages} stages below 1e-09"


@pytest.mark.parametrize("argv", [[], ["--all"]])
def test_output_fits_in_100_columns(argv):
    result = subprocess.run([sys.executable, "gradcheck.py", *argv], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    assert len(lines) > (60 if argv else 20)
    assert max(len(line) for line in lines) <= 100


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


def _off_by_a_hair(params, X, **settings):
    """Every gradient 6e-9 too large: rel. diff about 3e-9, within 10x of the bar."""
    cost, grads = sae.cost_and_grad(params, X, **settings)
    return cost, {name: grad * (1 + 6e-9) for name, grad in grads.items()}


TRUNCATION_NOTE = "truncation error"


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
    label = f"{broken.__module__}.{broken.__name__}"
    (section, rows), = _sections(captured.out).items()      # cost_fn given: no softmax section
    assert section == label
    for name, row in rows.items():
        status = row.split()[-1]
        assert status == ("FAIL" if name in expected_failures else "ok")
        assert float(row.split()[-6]) >= 1e-8 or status == "ok"    # the rel. diff is shown
    err = " ".join(captured.err.split())
    which = ("all 6 stages" if len(expected_failures) == 6 else ", ".join(expected_failures))
    assert f"FAILED {label}: {which}" in err
    assert TRUNCATION_NOTE not in err                       # wrong by far more than 10x


def test_a_failure_near_the_threshold_gets_the_truncation_note(capsys):
    assert gradcheck.main(["--seed", "3"], cost_fn=_off_by_a_hair) == 1
    captured = capsys.readouterr()
    (rows,) = _sections(captured.out).values()
    diffs = [float(row.split()[-6]) for row in rows.values()]
    assert all(1e-9 <= d < 1e-8 for d in diffs)
    err = " ".join(captured.err.split())
    assert TRUNCATION_NOTE in err and "--eps 1e-5" in err
    assert "in: " + ", ".join(AE_NAMES) in err
    assert max(len(line) for line in captured.err.splitlines()) <= 100


def test_show_prints_numerical_and_analytic_pairs(capsys):
    assert gradcheck.main(["--show", "3", "--all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 100
    pair = re.compile(r" {4}(\w+)\[([\d, ]+)\] +(\S+) +(\S+)$")
    pairs = [pair.match(line) for line in lines if pair.match(line)]
    # 3 pairs of each of 4 blocks for 12 autoencoder stages and 3 modern ones,
    # 3 of each of W, b for softmax; for the stacked stages, of each encoder's
    # W and b and the softmax's theta (and b): 2 encoders + 2 blocks, 2 + 1, 3 + 2.
    stacked_blocks = (2 * 2 + 2) + (2 * 2 + 1) + (3 * 2 + 2)
    assert len(pairs) == 3 * 4 * 12 + 3 * 2 + 3 * 4 * 3 + 3 * stacked_blocks
    first_stage = [m.group(1, 2) for m in pairs[:12]]
    assert first_stage == [(block, index) for block, indices in [
        ("W1", ["0, 0", "0, 1", "0, 2"]), ("b1", ["0", "1", "2"]),
        ("W2", ["0, 0", "0, 1", "0, 2"]), ("b2", ["0", "1", "2"])] for index in indices]
    for m in pairs:
        assert float(m.group(3)) == pytest.approx(float(m.group(4)), rel=1e-6, abs=1e-9)
    # The pairs are the checked ones: the first is dJ/dW1[0, 0] of "reconstruction only".
    params, X = gradcheck.make_problem()
    _, grads = sae.cost_and_grad(params, X, **gradcheck.AUTOENCODER_STAGES[0].settings)
    assert float(pairs[0].group(4)) == pytest.approx(grads["W1"][0, 0], rel=1e-11)
    headers = [line for line in lines if line.split() == ["numerical", "analytic"]]
    assert len(headers) == 19


def test_command_line_run_exits_0():
    result = subprocess.run([sys.executable, "gradcheck.py", "--examples", "4"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 examples" in result.stdout


def test_help_explains_every_option():
    result = subprocess.run([sys.executable, "gradcheck.py", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for option in ("--cost", "--show", "--visible", "--hidden", "--examples", "--seed", "--eps"):
        assert option in result.stdout
    assert "1e-09" in result.stdout


@pytest.mark.parametrize("argv, option", [
    (["--visible", "0"], "--visible"),
    (["--hidden", "two"], "--hidden"),
    (["--examples", "-3"], "--examples"),
    (["--seed", "-1"], "--seed"),
    (["--eps", "0"], "--eps"),
    (["--eps", "inf"], "--eps"),
    (["--show", "-1"], "--show"),
])
def test_bad_options_are_rejected_by_name(capsys, argv, option):
    with pytest.raises(SystemExit) as excinfo:
        gradcheck.main(argv)
    assert excinfo.value.code == 2
    assert f"argument {option}:" in capsys.readouterr().err


# ---------------------------------------------------------------------------
# --cost
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["fast:cost_and_grad", "sparse_autoencoder.py:cost_and_grad"])
def test_cost_checks_the_named_function_alone(capsys, spec):
    assert gradcheck.main(["--cost", spec]) == 0
    sections = _sections(capsys.readouterr().out)
    assert list(sections) == [spec]
    assert list(sections[spec]) == AE_NAMES


def test_cost_from_a_file_elsewhere(tmp_path):
    path = tmp_path / "mine.py"
    path.write_text(textwrap.dedent("""\
        import sparse_autoencoder

        def twice_b1(params, X, *, penalty="kl", rho=0.01, beta=3.0, lam=1e-4, decoder="sigmoid"):
            cost, grads = sparse_autoencoder.cost_and_grad(
                params, X, penalty=penalty, rho=rho, beta=beta, lam=lam, decoder=decoder)
            grads["b1"] = 2 * grads["b1"]
            return cost, grads
        """))
    result = subprocess.run([sys.executable, str(ROOT / "gradcheck.py"), "--cost", f"{path}:twice_b1"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    rows = _sections(result.stdout)[f"{path}:twice_b1"]
    assert [row.split()[-1] for row in rows.values()] == ["FAIL"] * 6
    assert f"FAILED {path}:twice_b1: all 6 stages" in " ".join(result.stderr.split())


BAD_COST_FILES = {
    "broken.py": "import numpy as np\nx = undefined_name + 1\n",
    "syntax.py": "def cost_and_grad(params, X:\n    pass\n",
    "notfn.py": "cost_and_grad = 3\n",
    "narrow.py": "def cost_and_grad(params, X):\n    return 0.0, {}\n",
    "exits.py": "import sys\nsys.exit('bye')\n",
}


@pytest.mark.parametrize("spec, message", [
    ("exercise.py", "expected FILE.py:FUNCTION or module:FUNCTION, e.g. exercise.py:cost_and_grad, "
                    "got 'exercise.py'"),
    (":cost_and_grad", "expected FILE.py:FUNCTION or module:FUNCTION"),
    ("exercise.py:", "expected FILE.py:FUNCTION or module:FUNCTION"),
    ("missing.py:cost_and_grad", "no such file: 'missing.py'"),
    ("no_such_module:cost_and_grad", "no module named 'no_such_module' "
                                     "(for a file, give its path: no_such_module.py)"),
    ("sparse_autoencoder.py:no_such_function",
     "sparse_autoencoder.py has no function 'no_such_function'"),
    ("sparse_autoencoder:PARAM_NAMES", "sparse_autoencoder:PARAM_NAMES is a tuple, not a function"),
    ("{tmp}/notfn.py:cost_and_grad", "{tmp}/notfn.py:cost_and_grad is a int, not a function"),
    ("{tmp}/broken.py:cost_and_grad", "importing {tmp}/broken.py failed: NameError: name "
                                      "'undefined_name' is not defined (broken.py:2)"),
    ("{tmp}/syntax.py:cost_and_grad", "importing {tmp}/syntax.py failed: SyntaxError: "),
    ("{tmp}/exits.py:cost_and_grad", "importing {tmp}/exits.py failed: SystemExit: bye (exits.py:2)"),
    ("{tmp}/narrow.py:cost_and_grad", "{tmp}/narrow.py:cost_and_grad does not take cost_and_grad's "
                                      "arguments (params, X, *, penalty, rho, beta, lam, decoder): "),
])
def test_bad_cost_is_refused_in_one_line(tmp_path, capsys, monkeypatch, spec, message):
    monkeypatch.chdir(ROOT)
    for name, text in BAD_COST_FILES.items():
        (tmp_path / name).write_text(text)
    spec, message = spec.format(tmp=tmp_path), message.format(tmp=tmp_path)
    with pytest.raises(SystemExit) as excinfo:
        gradcheck.main(["--cost", spec])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err
    assert re.match(r"\S+: error: argument --cost: " + re.escape(message), errors[0]), errors[0]


def test_bad_cost_on_the_command_line_exits_2_with_one_line():
    result = subprocess.run([sys.executable, "gradcheck.py", "--cost", "fast.py:nope"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        "gradcheck.py: error: argument --cost: fast.py has no function 'nope'")
    assert "Traceback" not in result.stderr


# ---------------------------------------------------------------------------
# J itself: a gradient that matches its cost is not enough, the cost must be the notes' J
# ---------------------------------------------------------------------------


def _without_one_over_m(params, X, *, penalty="kl", rho=0.01, beta=3.0, lam=1e-4, decoder="sigmoid"):
    """A student's slip, made consistently: 1/m left out of the reconstruction term and
    of all four gradients, then sparsity_delta divided by m to make the KL stage pass.
    Every gradient matches this cost; the cost is not the notes' J."""
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    m = X.shape[0]
    a2 = sae.sigmoid(X @ W1.T + b1)
    z3 = a2 @ W2.T + b2
    a3 = sae.sigmoid(z3) if decoder == "sigmoid" else z3
    rho_hat = a2.mean(axis=0)
    cost = np.sum((a3 - X) ** 2) / 2 + (lam / 2) * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    if penalty == "kl":
        cost += beta * np.sum(sae.kl_divergence(rho, rho_hat))
        sparsity_delta = beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat)) / m
    elif penalty == "l1":
        cost += beta * np.sum(np.abs(a2)) / m
        sparsity_delta = beta * np.ones_like(rho_hat) / m
    else:
        sparsity_delta = np.zeros_like(rho_hat)
    delta3 = (a3 - X) * a3 * (1 - a3) if decoder == "sigmoid" else a3 - X
    delta2 = (delta3 @ W2 + sparsity_delta) * a2 * (1 - a2)
    grads = {"W1": delta2.T @ X + lam * W1, "b1": delta2.sum(axis=0),
             "W2": delta3.T @ a2 + lam * W2, "b2": delta3.sum(axis=0)}
    return float(cost), grads


def _with_the_recon_part_and_its_gradient(params, X, factor=1.0, **settings):
    """The notes' J and gradient plus (factor - 1) times the reconstruction part's."""
    cost, grads = sae.cost_and_grad(params, X, **settings)
    reconstruction_only = dict(settings, penalty="none", lam=0.0)
    part, part_grads = sae.cost_and_grad(params, X, **reconstruction_only)
    return (cost + (factor - 1) * part,
            {name: grads[name] + (factor - 1) * part_grads[name] for name in grads})


def _without_the_half(params, X, **settings):
    """(1/m) sum ||a3 - x||^2 with the 1/2 left out, consistently in the gradient."""
    return _with_the_recon_part_and_its_gradient(params, X, 2.0, **settings)


def _without_weight_decay(params, X, **settings):
    """The weight-decay term and its gradients left out."""
    return sae.cost_and_grad(params, X, **dict(settings, lam=0.0))


def test_the_consistent_missing_one_over_m_passes_every_gradient_but_fails_on_j(capsys):
    params, X = gradcheck.make_problem()
    for stage, check in gradcheck.run_stages(_without_one_over_m, params, X,
                                             gradcheck.AUTOENCODER_STAGES):
        assert check.relative_difference < gradcheck.TOLERANCE, stage.name  # the gradient is its cost's
        assert check.cost_error, stage.name                                  # the cost is not J
    assert gradcheck.main([], cost_fn=_without_one_over_m) == 1
    captured = capsys.readouterr()
    out = " ".join(captured.out.split())
    assert "J: 5.4816219 where the notes' J is 0.54816219 (ratio 10 = m)" in out
    assert "1/m missing" in out
    err = " ".join(captured.err.split())
    assert "all 6 stages" in err and "J is not the notes' J in" in err


@pytest.mark.parametrize("cost_fn, expected", [
    (_without_the_half, "all of J is 2 times the notes' J (the 1/2 missing?)"),
    (_without_weight_decay, "the weight-decay term is left out"),
])
def test_the_classic_slips_are_named(capsys, cost_fn, expected):
    assert gradcheck.main([], cost_fn=cost_fn) == 1
    rows = _sections(capsys.readouterr().out)
    params, X = gradcheck.make_problem()
    for stage, check in gradcheck.run_stages(cost_fn, params, X, gradcheck.AUTOENCODER_STAGES):
        assert check.relative_difference < gradcheck.TOLERANCE
        wrong = cost_fn(params, X, **stage.settings)[0] != pytest.approx(
            sae.cost_and_grad(params, X, **stage.settings)[0], rel=1e-9)
        assert bool(check.cost_error) == wrong, stage.name
        if cost_fn is _without_the_half and stage.settings["penalty"] == "none" \
                and stage.settings["lam"] == 0:
            assert expected in " ".join(check.cost_error.split())
        if cost_fn is _without_weight_decay and stage.settings["lam"] > 0:
            assert expected in " ".join(check.cost_error.split())
    assert rows


@pytest.mark.parametrize("factor, words", [
    (10, "all of J is m = 10 times"), (0.1, "all of J is 1/m = 1/10 times"),
    (2, "all of J is 2 times"), (0.5, "all of J is 1/2 times")])
def test_compare_with_notes_names_the_ratio(factor, words):
    terms = {"reconstruction": 0.3, "weight_decay": 0.2, "sparsity": 0.5, "cost": 1.0}
    line = gradcheck.compare_with_notes(factor * 1.0, terms, m=10)
    assert words in line and f"where the notes' J is 1 (ratio {factor:g}" in line


def test_compare_with_notes_names_a_term_scaled_or_left_out():
    terms = {"reconstruction": 0.35, "weight_decay": 0.25, "sparsity": 0.4, "cost": 1.0}
    assert "the sparsity term is left out" in gradcheck.compare_with_notes(0.6, terms, m=10)
    assert "the reconstruction term is m = 10 times the notes' (1/m missing" in \
        gradcheck.compare_with_notes(1.0 + 9 * 0.35, terms, m=10)
    assert "the weight-decay term is 2 times the notes' (the 1/2 missing?)" in \
        gradcheck.compare_with_notes(1.25, terms, m=10)
    assert gradcheck.compare_with_notes(1.0 * (1 + 1e-12), terms, m=10) == ""
    terms = {"reconstruction": 0.3, "weight_decay": 0.2, "sparsity": 0.5, "cost": 1.0}
    unexplained = gradcheck.compare_with_notes(1.234, terms, m=10)
    assert unexplained == "1.234 where the notes' J is 1 (ratio 1.234)"


def test_a_correct_function_of_ones_own_passes_with_j_checked(capsys):
    def mine(params, X, **settings):
        return sae.cost_and_grad(params, X, **settings)

    assert gradcheck.main([], cost_fn=mine) == 0
    out = capsys.readouterr().out
    assert "which must also be the notes' J" in out and "J: " not in out.replace("J: the cost", "")


# ---------------------------------------------------------------------------
# Issue 20: a function that changes its inputs, or returns oddly, cannot fool the checker
# ---------------------------------------------------------------------------


def _scales_W1_in_place(params, X, **settings):
    """Correct result, then a classic slip: W1 changed in place afterwards."""
    result = sae.cost_and_grad(params, X, **settings)
    params["W1"] *= 2.0
    return result


def _rescales_X_in_place(params, X, **settings):
    result = sae.cost_and_grad(params, X, **settings)
    X *= 0.5
    return result


@pytest.mark.parametrize("cost_fn, culprit", [(_scales_W1_in_place, "params['W1']"),
                                              (_rescales_X_in_place, "X")])
def test_a_function_that_changes_its_inputs_gets_right_rows_and_a_notice(capsys, cost_fn, culprit):
    params, X = gradcheck.make_problem()
    before = {name: value.copy() for name, value in params.items()}, X.copy()
    results = gradcheck.run_stages(cost_fn, params, X, gradcheck.AUTOENCODER_STAGES)
    assert gradcheck.failing_stages(results) == []              # never blamed gradients
    for (stage, check), expected in zip(results, gradcheck.run_stages(
            sae.cost_and_grad, *gradcheck.make_problem(), gradcheck.AUTOENCODER_STAGES)):
        assert check.cost == expected[1].cost                   # later stages see the same data
        assert any(culprit in note for note in check.notes)
    for name in params:                                         # the caller's arrays untouched
        np.testing.assert_array_equal(params[name], before[0][name])
    np.testing.assert_array_equal(X, before[1])
    assert gradcheck.main([], cost_fn=cost_fn) == 0
    out = capsys.readouterr().out
    assert f"changed {culprit} in place" in " ".join(out.split())
    assert "0.72724124" in out                                  # "+ weight decay": the notes' J


def test_a_bare_float_at_perturbed_points_is_named_not_the_checkers_line():
    calls = []

    def bare_after_first(params, X, **settings):
        calls.append(1)
        result = sae.cost_and_grad(params, X, **settings)
        return result if len(calls) == 1 else result[0]

    params, X = gradcheck.make_problem()
    (_, check), = gradcheck.run_stages(bare_after_first, params, X, gradcheck.STAGES[:1])
    assert check.reason == "returned float at a perturbed theta, expected a tuple (cost, grads)"


def test_numerical_gradient_refuses_a_nan_naming_the_point():
    def f(t):
        return float("nan") if t[1] > 1 else float(t @ t)

    with pytest.raises(ValueError, match=r"f: returned nan at theta \+ eps e_1, expected a finite"):
        gradcheck.numerical_gradient(f, np.array([1.0, 1.0, 1.0]))


def test_numerical_gradient_refuses_an_f_that_changes_its_argument_and_keeps_theta():
    theta = np.array([1.0, 2.0, 3.0])

    def f(t):
        t *= 2                                                  # the slip
        return float(t.sum())

    with pytest.raises(ValueError, match="f: changed the array it was given, in place"):
        gradcheck.numerical_gradient(f, theta)
    np.testing.assert_array_equal(theta, [1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="f: expected a function"):
        gradcheck.numerical_gradient(3.0, theta)


def test_every_mean_a_sum_is_named_and_a_gradient_failure_suggests_show(capsys):
    """From a student's read-through: 1/m dropped from the reconstruction and the L1 term alike."""
    terms = {"reconstruction": 0.35, "weight_decay": 0.25, "sparsity": 0.4, "cost": 1.0}
    line = gradcheck.compare_with_notes(1.0 + 9 * (0.35 + 0.4), terms, m=10)
    assert "reconstruction and sparsity terms are both m = 10 times" in line
    assert gradcheck.main(["--seed", "3"], cost_fn=_with_a_tiny_error_in_b2) == 1
    assert "--show N prints" in " ".join(capsys.readouterr().err.split())
