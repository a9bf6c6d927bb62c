"""The exercise's skeleton (exercise.py) under the staged gradient check.

The skeleton is tested as a student meets it: blank, it fails every stage
on one line each; filled in with the readable model's lines (written to a
copy in tmp_path, blank by blank), it passes every stage; filled in part,
exactly the stages that run no blank pass; filled in wrong, the stages that
run the wrong line fail with their relative difference.
"""

import inspect
import re
import subprocess
import sys

import numpy as np
import pytest

import exercise
import gradcheck
import sparse_autoencoder as sae
from conftest import ROOT

SKELETON = ROOT / "exercise.py"
BLANK = re.compile(r'^(\s*)raise NotImplementedError\("([^"]*)"\)\s*$')

# Each blank's message, in the file's order (the notes' order), and the line
# of sparse_autoencoder.cost_and_grad that fills it.
SOLUTION = [
    ("z2 (m, n_hidden)", "z2 = X @ W1.T + b1"),
    ("a2 (m, n_hidden)", "a2 = sigmoid(z2)"),
    ("z3 (m, n_visible)", "z3 = a2 @ W2.T + b2"),
    ("a3 [sigmoid] (m, n_visible)", "a3 = sigmoid(z3)"),
    ("a3 [linear] (m, n_visible)", "a3 = z3"),
    ("rho_hat (n_hidden,)", "rho_hat = clip_rho_hat(a2.mean(axis=0))"),
    ("reconstruction (a float)", "reconstruction = np.sum((a3 - X) ** 2) / (2 * m)"),
    ("weight_decay (a float)", "weight_decay = (lam / 2) * (np.sum(W1 ** 2) + np.sum(W2 ** 2))"),
    ("sparsity [KL] (a float)", "sparsity = beta * np.sum(kl_divergence(rho, rho_hat))"),
    ("sparsity [L1] (a float)", "sparsity = beta * np.sum(np.abs(a2)) / m"),
    ("cost (a float)", "cost = reconstruction + weight_decay + sparsity"),
    ("delta3 [sigmoid] (m, n_visible)", "delta3 = (a3 - X) * a3 * (1 - a3)"),
    ("delta3 [linear] (m, n_visible)", "delta3 = a3 - X"),
    ("sparsity_delta [KL] (n_hidden,)",
     "sparsity_delta = beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))"),
    ("sparsity_delta [L1] (n_hidden,)", "sparsity_delta = beta * np.ones_like(rho_hat)"),
    ("delta2 (m, n_hidden)", "delta2 = (delta3 @ W2 + sparsity_delta) * a2 * (1 - a2)"),
    ("grad_W1 (n_hidden, n_visible)", "grad_W1 = delta2.T @ X / m + lam * W1"),
    ("grad_b1 (n_hidden,)", "grad_b1 = delta2.sum(axis=0) / m"),
    ("grad_W2 (n_visible, n_hidden)", "grad_W2 = delta3.T @ a2 / m + lam * W2"),
    ("grad_b2 (n_visible,)", "grad_b2 = delta3.sum(axis=0) / m"),
]
SOLUTION_LINES = dict(SOLUTION)
STAGE_NAMES = [stage.name for stage in gradcheck.AUTOENCODER_STAGES]


def _blanks(lines):
    """[(line index, message)] of the blank lines, in order."""
    return [(i, BLANK.match(line).group(2)) for i, line in enumerate(lines) if BLANK.match(line)]


def _fill(tmp_path, leave=(), replace=None, name="exercise.py"):
    """A copy of exercise.py in tmp_path with its blanks written, and its --cost value.

    Every blank gets its line of SOLUTION, except the blanks whose message is in
    ``leave`` (kept blank) or in ``replace`` (message -> another line, a bug).
    Nothing else in the file changes.
    """
    replace = replace or {}
    lines = SKELETON.read_text().splitlines(keepends=True)
    for i, message in _blanks(lines):
        if message not in leave:
            indent = BLANK.match(lines[i]).group(1)
            lines[i] = indent + replace.get(message, SOLUTION_LINES[message]) + "\n"
    path = tmp_path / name
    path.write_text("".join(lines))
    return f"{path}:cost_and_grad"


def _run(spec, *options):
    return subprocess.run([sys.executable, "gradcheck.py", "--cost", spec, *options], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def _rows(out, label):
    """{stage name: row} of the section ``label`` in the command's output."""
    lines = out.splitlines()
    start = lines.index(label) + 1
    rows = {}
    for line in lines[start:]:
        if not line:
            break
        name = next((n for n in STAGE_NAMES if line.startswith(n + "  ")), None)
        if name is not None:
            rows[name] = line
    return rows


def _status(row):
    """ "ok", "FAIL" (a relative difference) or the reason of a FAILED line."""
    if "  FAILED: " in row:
        return row.split("  FAILED: ", 1)[1]
    return row.split()[-1]


# ---------------------------------------------------------------------------
# The skeleton itself
# ---------------------------------------------------------------------------


def test_the_blanks_are_in_the_notes_order():
    lines = SKELETON.read_text().splitlines()
    assert [message for _, message in _blanks(lines)] == [message for message, _ in SOLUTION]
    source = inspect.getsource(sae.cost_and_grad)
    for message, line in SOLUTION:                # the solution is the readable model's lines
        assert line in source or line == "a3 = z3", line


def test_each_blank_has_its_equation_and_shape_above_it():
    lines = SKELETON.read_text().splitlines()
    for i, message in _blanks(lines):
        start = i
        while lines[start - 1].strip().startswith("#"):
            start -= 1
        comment = " ".join(line.strip() for line in lines[start:i])    # the comment above it
        assert comment.startswith("#") and "->" in comment, (i + 1, comment)
        equation, shape = (part.strip() for part in comment.rsplit("->", 1))
        shape = shape if shape.startswith("(") else f"({shape})"     # "a float" -> "(a float)"
        assert message.endswith(f" {shape}"), (message, shape)
        assert "=" in equation or "beta" in equation, comment       # an equation of the notes


def test_the_signature_and_checks_are_those_of_cost_and_grad():
    assert inspect.signature(exercise.cost_and_grad) == inspect.signature(sae.cost_and_grad)
    params, X = gradcheck.make_problem()
    with pytest.raises(ValueError, match="^X: the sigmoid decoder needs values in"):
        exercise.cost_and_grad(params, X * 255)
    with pytest.raises(ValueError, match="^penalty:"):
        exercise.cost_and_grad(params, X, penalty="L2")
    with pytest.raises(NotImplementedError, match=r"^z2 \(m, n_hidden\)$"):
        exercise.cost_and_grad(params, X)


def test_the_blank_skeleton_fails_every_stage_on_one_line():
    result = _run("exercise.py:cost_and_grad")
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    z2_line = 1 + _blanks(SKELETON.read_text().splitlines())[0][0]
    failed = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert failed == [f"{name.ljust(19)}  FAILED: NotImplementedError: z2 (m, n_hidden) "
                      f"(exercise.py:{z2_line})" for name in STAGE_NAMES]
    assert "FAILED exercise.py:cost_and_grad: all 6 stages" in result.stderr
    assert "NotImplementedError: a blank still to be written" in " ".join(result.stderr.split())
    assert "truncation" not in result.stderr
    assert max(len(line) for line in (result.stdout + result.stderr).splitlines()) <= 100


# ---------------------------------------------------------------------------
# Filled in
# ---------------------------------------------------------------------------


def test_the_skeleton_filled_with_the_readable_lines_passes_every_stage(tmp_path, capsys):
    spec = _fill(tmp_path)
    text = (tmp_path / "exercise.py").read_text()
    assert "NotImplementedError" not in text.split('"""', 2)[2].split("def cost_and_grad")[1]
    assert gradcheck.main(["--cost", spec]) == 0
    out = capsys.readouterr().out
    assert [_status(row) for row in _rows(out, spec).values()] == ["ok"] * 6
    assert "all 6 stages below 1e-09" in out
    # And it computes what the readable model computes, stage by stage.
    module = gradcheck.load_cost_function(spec).fn
    params, X = gradcheck.make_problem()
    for stage in gradcheck.AUTOENCODER_STAGES:
        cost, grads = module(params, X, **stage.settings)
        expected_cost, expected = sae.cost_and_grad(params, X, **stage.settings)
        assert cost == pytest.approx(expected_cost, rel=1e-14)
        for name in sae.PARAM_NAMES:
            np.testing.assert_allclose(grads[name], expected[name], rtol=1e-13, atol=1e-16)


@pytest.mark.parametrize("leave, expected", [
    # The core written: the stages without weight decay and sparsity pass.
    (["weight_decay (a float)", "sparsity [KL] (a float)", "sparsity [L1] (a float)",
      "sparsity_delta [KL] (n_hidden,)", "sparsity_delta [L1] (n_hidden,)"],
     {"reconstruction only": "ok", "linear decoder": "ok",
      "+ weight decay": "weight_decay (a float)", "+ KL sparsity": "weight_decay (a float)",
      "L1 sparsity": "weight_decay (a float)", "everything together": "weight_decay (a float)"}),
    # Then weight decay: only the sparsity blanks remain.
    (["sparsity [KL] (a float)", "sparsity [L1] (a float)",
      "sparsity_delta [KL] (n_hidden,)", "sparsity_delta [L1] (n_hidden,)"],
     {"reconstruction only": "ok", "+ weight decay": "ok", "linear decoder": "ok",
      "+ KL sparsity": "sparsity [KL] (a float)", "L1 sparsity": "sparsity [L1] (a float)",
      "everything together": "sparsity [KL] (a float)"}),
    # KL's cost written but not its delta.
    (["sparsity_delta [KL] (n_hidden,)", "sparsity [L1] (a float)", "sparsity_delta [L1] (n_hidden,)"],
     {"reconstruction only": "ok", "+ weight decay": "ok", "linear decoder": "ok",
      "+ KL sparsity": "sparsity_delta [KL] (n_hidden,)", "L1 sparsity": "sparsity [L1] (a float)",
      "everything together": "sparsity_delta [KL] (n_hidden,)"}),
    # Everything but the linear decoder's branches.
    (["a3 [linear] (m, n_visible)", "delta3 [linear] (m, n_visible)"],
     {"reconstruction only": "ok", "+ weight decay": "ok", "+ KL sparsity": "ok",
      "L1 sparsity": "ok", "linear decoder": "a3 [linear] (m, n_visible)",
      "everything together": "a3 [linear] (m, n_visible)"}),
])
def test_stages_pass_as_their_blanks_are_written(tmp_path, capsys, leave, expected):
    spec = _fill(tmp_path, leave=leave)
    assert gradcheck.main(["--cost", spec]) == 1
    captured = capsys.readouterr()
    lines = SKELETON.read_text().splitlines()
    line_of = {message: i + 1 for i, message in _blanks(lines)}
    statuses = {name: _status(row) for name, row in _rows(captured.out, spec).items()}
    assert statuses == {
        name: status if status == "ok"
        else f"NotImplementedError: {status} (exercise.py:{line_of[status]})"
        for name, status in expected.items()}
    failing = [name for name in STAGE_NAMES if expected[name] != "ok"]
    assert f"FAILED {spec}: {', '.join(failing)}" in " ".join(captured.err.split())
    assert max(len(line) for line in captured.out.splitlines()) <= 100


def test_delta3_without_f_prime_fails_the_sigmoid_stages_with_their_rel_diff(tmp_path, capsys):
    spec = _fill(tmp_path, replace={"delta3 [sigmoid] (m, n_visible)": "delta3 = a3 - X"})
    assert gradcheck.main(["--cost", spec]) == 1
    captured = capsys.readouterr()
    rows = _rows(captured.out, spec)
    for stage in gradcheck.AUTOENCODER_STAGES:
        row = rows[stage.name]
        rel_diff = float(row.split()[-6])
        if stage.settings["decoder"] == "sigmoid":
            assert row.endswith("FAIL") and rel_diff > 1e-3
        else:
            assert row.endswith("ok") and rel_diff < 1e-9
    assert "truncation" not in captured.err                  # wrong by far more than 10x


def test_a_forgotten_lam_w1_shows_in_the_w1_column_of_the_stages_with_lam(tmp_path, capsys):
    spec = _fill(tmp_path, replace={"grad_W1 (n_hidden, n_visible)": "grad_W1 = delta2.T @ X / m"})
    assert gradcheck.main(["--cost", spec]) == 1
    rows = _rows(capsys.readouterr().out, spec)
    for stage in gradcheck.AUTOENCODER_STAGES:
        rel_diff, w1, b1, w2, b2 = map(float, rows[stage.name].split()[-6:-1])
        if stage.settings["lam"] > 0:
            assert rows[stage.name].endswith("FAIL") and w1 > 1e-3 > max(b1, w2, b2)
        else:
            assert rows[stage.name].endswith("ok")


def test_show_on_the_filled_skeleton(tmp_path):
    result = _run(_fill(tmp_path), "--show", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    pairs = [line for line in result.stdout.splitlines() if re.match(r" {4}[Wb][12]\[", line)]
    assert len(pairs) == 6 * 4 * 3
    assert max(len(line) for line in result.stdout.splitlines()) <= 100


def test_the_hints_do_not_quote_or_point_to_the_solution():
    """Issue 17: the layout hints once sent the student to sparse_autoencoder.py's
    docstring, which holds the hardest blanks word for word."""
    text = SKELETON.read_text()
    for message, line in SOLUTION:
        right_hand_side = line.split(" = ", 1)[1]
        if right_hand_side in ("z3", "sigmoid(z3)", "sigmoid(z2)",
                               "reconstruction + weight_decay + sparsity"):
            continue                          # the notes' own equations, given in the comments
        assert right_hand_side not in text, (message, right_hand_side)
    for product in ("X @ W1.T", "a2 @ W2.T", "delta3 @ W2", "delta2.T @ X", "delta3.T @ a2"):
        assert product not in text, product
    assert "docstring of sparse_autoencoder.py shows" not in text
    assert "read them\nafterwards" in text or "read them afterwards" in " ".join(text.split())
