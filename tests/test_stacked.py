"""stacked_autoencoder: the fine-tuning cost and gradient of a stacked autoencoder + softmax.

- cost_and_grad agrees with a central-difference gradient (two hidden
  layers of different widths) to a relative difference below 1e-9;
- it agrees with the notes' per-example loop (loop_cost_and_grad) to 1e-10,
  on a fixed net and on hypothesis' nets of depth 1 to 4;
- one encoder and lam = 0 is softmax regression on the encoder's features;
- float32 in, float32 out; the weight decay touches theta alone;
- bad arguments are refused, naming them.

Everything is float64 unless a test says otherwise; tiny shapes, fixed seeds.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import stacked_autoencoder as sa

SIZES = [6, 5, 3]          # 6 inputs -> 5 -> 3 hidden units
N_CLASSES = 4


def problem(sizes=SIZES, n_classes=N_CLASSES, m=7, bias=True, seed=0, dtype=np.float64):
    """(params, X, y): a small random net and data, from one seed."""
    rng = np.random.default_rng(seed)
    params = sa.init_stacked_params(sizes, n_classes, rng, dtype=dtype, bias=bias)
    X = rng.uniform(-1.0, 1.0, size=(m, sizes[0]))
    y = rng.integers(0, n_classes, size=m)
    return params, X, y


def leaves(params):
    """Every array of a params (or grads) dict, in the packed order, with its name."""
    out = [(f"softmax.{name}", params["softmax"][name]) for name in ("W", "b")
           if name in params["softmax"]]
    for k, layer in enumerate(params["stack"]):
        out += [(f"stack[{k}].W", layer["W"]), (f"stack[{k}].b", layer["b"])]
    return out


def central_difference(f, theta, eps):
    """The numerical gradient (f(theta + eps e_k) - f(theta - eps e_k)) / (2 eps), for every k."""
    grad = np.zeros_like(theta)
    for k in range(theta.size):
        step = np.zeros_like(theta)
        step[k] = eps
        grad[k] = (f(theta + step) - f(theta - step)) / (2 * eps)
    return grad


def relative_difference(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(a + b)


def assert_same(cost_a, grads_a, cost_b, grads_b, rtol):
    np.testing.assert_allclose(cost_a, cost_b, rtol=rtol, atol=0)
    for (name, ga), (_, gb) in zip(leaves(grads_a), leaves(grads_b)):
        assert ga.shape == gb.shape, name
        np.testing.assert_allclose(ga, gb, rtol=rtol, atol=0, err_msg=name)


# ---------------------------------------------------------------------------
# The gradient
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("bias", [True, False])
def test_gradient_matches_central_differences(bias):
    # Measured: 1.4e-10 with the bias, 8.3e-11 without, at eps = 1e-5
    # (at eps = 1e-4 truncation gives 4.6e-10; at 1e-6 round-off gives 1.2e-9).
    params, X, y = problem(bias=bias)
    lam = 1e-3

    def f(theta):
        return sa.cost_and_grad(sa.unpack(theta, SIZES, N_CLASSES, bias), X, y, lam=lam)[0]

    analytic = sa.pack(sa.cost_and_grad(params, X, y, lam=lam)[1])
    numerical = central_difference(f, sa.pack(params), eps=1e-5)
    assert relative_difference(numerical, analytic) < 1e-9


@pytest.mark.parametrize("bias", [True, False])
def test_vectorized_equals_the_notes_loop(bias):
    params, X, y = problem(bias=bias)
    assert_same(*sa.cost_and_grad(params, X, y, lam=3e-3),
                *sa.loop_cost_and_grad(params, X, y, lam=3e-3), rtol=1e-10)


@settings(deadline=None, max_examples=40, derandomize=True)
@given(
    sizes=st.lists(st.integers(1, 6), min_size=2, max_size=5),      # depth 1..4 encoders
    m=st.integers(1, 8),
    n_classes=st.integers(2, 5),
    bias=st.booleans(),
    lam=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_vectorized_equals_the_notes_loop_for_any_depth(sizes, m, n_classes, bias, lam, seed):
    params, X, y = problem(sizes, n_classes, m, bias, seed)
    cost, grads = sa.cost_and_grad(params, X, y, lam=lam)
    assert_same(cost, grads, *sa.loop_cost_and_grad(params, X, y, lam=lam), rtol=1e-10)
    assert [name for name, _ in leaves(grads)] == [name for name, _ in leaves(params)]
    for (name, g), (_, p) in zip(leaves(grads), leaves(params)):
        assert g.shape == p.shape and g.dtype == p.dtype, name


def test_one_encoder_without_decay_is_softmax_regression_on_its_features():
    params, X, y = problem(sizes=[6, 5], m=9)
    W1, b1 = params["stack"][0]["W"], params["stack"][0]["b"]
    theta, b = params["softmax"]["W"], params["softmax"]["b"]
    m = X.shape[0]

    features = 1.0 / (1.0 + np.exp(-(X @ W1.T + b1)))                 # (m, 5)
    scores = features @ theta.T + b                                   # (m, n_classes)
    log_p = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
    softmax_cost = -log_p[np.arange(m), y].mean()
    one_hot = np.eye(N_CLASSES)[y]
    softmax_grad = (np.exp(log_p) - one_hot).T @ features / m         # (n_classes, 5)

    cost, grads = sa.cost_and_grad(params, X, y, lam=0.0)
    np.testing.assert_allclose(cost, softmax_cost, rtol=1e-13)
    np.testing.assert_allclose(grads["softmax"]["W"], softmax_grad, rtol=1e-12, atol=1e-16)


def test_weight_decay_touches_the_softmax_weights_alone():
    params, X, y = problem()
    lam_1, lam_2 = 0.2, 0.7
    cost_1, grads_1 = sa.cost_and_grad(params, X, y, lam=lam_1)
    cost_2, grads_2 = sa.cost_and_grad(params, X, y, lam=lam_2)
    theta = params["softmax"]["W"]

    for (name, g1), (_, g2) in zip(leaves(grads_1), leaves(grads_2)):
        if name != "softmax.W":
            np.testing.assert_array_equal(g1, g2, err_msg=name)      # not a bit changed
    np.testing.assert_allclose(grads_2["softmax"]["W"] - grads_1["softmax"]["W"],
                               (lam_2 - lam_1) * theta, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(cost_2 - cost_1, (lam_2 - lam_1) / 2 * np.sum(theta ** 2),
                               rtol=1e-12)


def test_float32_params_compute_in_float32():
    params, X, y = problem()
    params_32 = sa.unpack(sa.pack(params).astype(np.float32), SIZES, N_CLASSES)
    cost_64, grads_64 = sa.cost_and_grad(params, X, y, lam=1e-3)
    cost_32, grads_32 = sa.cost_and_grad(params_32, X, y, lam=1e-3)   # X float64: converted
    assert isinstance(cost_32, float)
    assert all(g.dtype == np.float32 for _, g in leaves(grads_32))
    np.testing.assert_allclose(cost_32, cost_64, rtol=1e-6)
    # Measured: 4.7e-8 relative, 1.2e-7 for the cost (float32's epsilon is 1.2e-7).
    assert relative_difference(sa.pack(grads_32).astype(np.float64), sa.pack(grads_64)) < 1e-6
    activations, P = sa.forward(params_32, X)
    assert all(a.dtype == np.float32 for a in activations) and P.dtype == np.float32


def test_large_scores_stay_finite_and_silent():
    # Scores in the thousands: exp would overflow without the row max; the
    # test suite turns every warning into an error.
    params, X, y = problem()
    params["softmax"]["W"] = params["softmax"]["W"] * 5000.0
    cost, grads = sa.cost_and_grad(params, X, y, lam=0.0)
    assert np.isfinite(cost) and all(np.isfinite(g).all() for _, g in leaves(grads))
    assert_same(cost, grads, *sa.loop_cost_and_grad(params, X, y, lam=0.0), rtol=1e-10)


# ---------------------------------------------------------------------------
# forward, predict, packing, building from autoencoders
# ---------------------------------------------------------------------------


def test_forward_predict_and_the_cost_agree():
    params, X, y = problem()
    activations, P = sa.forward(params, X)
    assert [a.shape for a in activations] == [(7, 6), (7, 5), (7, 3)]
    np.testing.assert_array_equal(activations[0], X)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_array_equal(sa.predict(params, X), P.argmax(axis=1))
    cost, _ = sa.cost_and_grad(params, X, y, lam=0.0)
    np.testing.assert_allclose(cost, -np.log(P[np.arange(7), y]).mean(), rtol=1e-13)


def test_nothing_is_overwritten():
    params, X, y = problem()
    theta, X_copy = sa.pack(params), X.copy()
    sa.cost_and_grad(params, X, y, lam=0.5)
    sa.loop_cost_and_grad(params, X, y, lam=0.5)
    np.testing.assert_array_equal(sa.pack(params), theta)
    np.testing.assert_array_equal(X, X_copy)


@pytest.mark.parametrize("bias", [True, False])
def test_pack_and_unpack(bias):
    params, _, _ = problem(bias=bias)
    theta = sa.pack(params)
    assert theta.shape == (4 * 3 + 4 * bias + 6 * 5 + 5 + 5 * 3 + 3,)
    np.testing.assert_array_equal(theta[:12], params["softmax"]["W"].ravel())   # softmax first
    back = sa.unpack(theta, SIZES, N_CLASSES, bias)
    for (name, a), (_, b) in zip(leaves(back), leaves(params)):
        np.testing.assert_array_equal(a, b, err_msg=name)
    back["stack"][1]["b"][0] = 42.0                      # views into theta
    assert theta[-3] == 42.0


def test_stack_from_autoencoders():
    rng = np.random.default_rng(3)
    ae_1 = {"W1": rng.normal(size=(5, 6)), "b1": rng.normal(size=5),
            "W2": rng.normal(size=(6, 5)), "b2": rng.normal(size=6)}
    ae_2 = {"W1": rng.normal(size=(3, 5)), "b1": rng.normal(size=3),
            "W2": rng.normal(size=(5, 3)), "b2": rng.normal(size=5)}
    softmax_params = {"W": rng.normal(size=(4, 3))}                   # UFLDL's: no bias
    params = sa.stack_from_autoencoders([ae_1, ae_2], softmax_params)
    np.testing.assert_array_equal(params["stack"][0]["W"], ae_1["W1"])
    np.testing.assert_array_equal(params["stack"][1]["b"], ae_2["b1"])
    assert set(params["softmax"]) == {"W"}
    params["stack"][0]["W"][0, 0] = 99.0                              # copies, not views
    assert ae_1["W1"][0, 0] != 99.0
    with pytest.raises(ValueError, match=r"^autoencoder_params_list\[1\]\['W1'\]"):
        sa.stack_from_autoencoders([ae_1, ae_1], softmax_params)      # 6 inputs after 5 units
    with pytest.raises(ValueError, match=r"^softmax_params\['W'\]"):
        sa.stack_from_autoencoders([ae_1], softmax_params)            # 3 columns after 5 units


# ---------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------


def _with(params, path, value):
    """A copy of params with the array at path ('stack', k, 'W') or ('softmax', 'b') replaced."""
    copy = {"stack": [dict(layer) for layer in params["stack"]], "softmax": dict(params["softmax"])}
    target = copy[path[0]] if len(path) == 2 else copy[path[0]][path[1]]
    target[path[-1]] = value
    return copy


BAD_CALLS = [
    # (description, call(params, X, y), exception, message start)
    ("X too narrow", lambda p, X, y: (p, X[:, :5], y, 1e-4), ValueError, "X:"),
    ("X with NaN", lambda p, X, y: (p, np.where(X > 0.5, np.nan, X), y, 1e-4), ValueError, "X:"),
    ("X of strings", lambda p, X, y: (p, X.astype(str), y, 1e-4), TypeError, "X:"),
    ("y too short", lambda p, X, y: (p, X, y[:-1], 1e-4), ValueError, "y:"),
    ("y out of range", lambda p, X, y: (p, X, np.full_like(y, 4), 1e-4), ValueError, "y:"),
    ("negative label", lambda p, X, y: (p, X, -np.ones_like(y), 1e-4), ValueError, "y:"),
    ("float labels", lambda p, X, y: (p, X, y.astype(float), 1e-4), TypeError, "y:"),
    ("negative lam", lambda p, X, y: (p, X, y, -1e-4), ValueError, "lam:"),
    ("lam a string", lambda p, X, y: (p, X, y, "1e-4"), TypeError, "lam:"),
    ("lam NaN", lambda p, X, y: (p, X, y, float("nan")), ValueError, "lam:"),
    ("encoders that do not chain",
     lambda p, X, y: (_with(p, ("stack", 1, "W"), np.zeros((3, 4))), X, y, 1e-4),
     ValueError, r"params\['stack'\]\[1\]\['W'\]"),
    ("bias of the wrong length",
     lambda p, X, y: (_with(p, ("stack", 0, "b"), np.zeros(4)), X, y, 1e-4),
     ValueError, r"params\['stack'\]\[0\]\['b'\]"),
    ("softmax of the wrong width",
     lambda p, X, y: (_with(p, ("softmax", "W"), np.zeros((4, 5))), X, y, 1e-4),
     ValueError, r"params\['softmax'\]\['W'\]"),
    ("mixed dtypes",
     lambda p, X, y: (_with(p, ("softmax", "b"), np.zeros(4, np.float32)), X, y, 1e-4),
     TypeError, r"params\['softmax'\]\['b'\]"),
    ("an empty stack", lambda p, X, y: ({"stack": [], "softmax": p["softmax"]}, X, y, 1e-4),
     TypeError, r"params\['stack'\]"),
    ("not a dict", lambda p, X, y: ([p], X, y, 1e-4), TypeError, "params:"),
]


@pytest.mark.parametrize("make, exception, start", [case[1:] for case in BAD_CALLS],
                         ids=[case[0] for case in BAD_CALLS])
@pytest.mark.parametrize("function", [sa.cost_and_grad, sa.loop_cost_and_grad])
def test_bad_arguments_are_refused_by_name(function, make, exception, start):
    params, X, y = problem()
    params, X, y, lam = make(params, X, y)
    with pytest.raises(exception, match="^" + start):
        function(params, X, y, lam=lam)
