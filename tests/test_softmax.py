"""Softmax regression: gradient check, loop reference, stability, training, helpers, bad input."""

import warnings

import numpy as np
import pytest

from gradcheck import numerical_gradient, relative_difference
from saelab.softmax import loop_softmax_cost_and_grad
from saelab.softmax import (
    accuracy,
    confusion_matrix,
    init_softmax_params,
    pack_softmax,
    predict,
    predict_proba,
    softmax_cost_and_grad,
    softmax_gradcheck_stage,
    train_softmax,
    unpack_softmax,
)


def random_problem(seed, m, n_features, n_classes, bias=True, dtype=np.float64, scale=1.0):
    """X uniform on [0, 1] (m, n_features), y (m,), params with standard-normal entries times scale."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.0, 1.0, size=(m, n_features))
    y = rng.integers(0, n_classes, size=m)
    params = init_softmax_params(n_features, n_classes, bias=bias, dtype=dtype)
    for array in params.values():
        array[...] = scale * rng.standard_normal(array.shape)
    return X, y, params


def blobs(seed, m_per_class, centers, spread):
    """Gaussian blobs around the rows of centers (n_classes, n_features): X (m, n_features), y (m,)."""
    rng = np.random.default_rng(seed)
    centers = np.asarray(centers, dtype=np.float64)
    y = np.repeat(np.arange(centers.shape[0]), m_per_class)
    X = centers[y] + spread * rng.standard_normal((y.size, centers.shape[1]))
    order = rng.permutation(y.size)
    return X[order], y[order]


# ---------------------------------------------------------------------------
# Gradient
# ---------------------------------------------------------------------------

GRADCHECK_CASES = [
    # m, n_features, n_classes, lam, bias
    (1, 1, 2, 0.0, True),
    (20, 8, 4, 0.0, True),
    (20, 8, 4, 1e-4, True),
    (7, 3, 10, 1e-4, False),
    (50, 15, 3, 1.0, True),
    (50, 15, 3, 0.0, False),
]


@pytest.mark.parametrize("m, n_features, n_classes, lam, bias", GRADCHECK_CASES)
def test_gradient_matches_central_differences(m, n_features, n_classes, lam, bias):
    f, theta, grad = softmax_gradcheck_stage(0, m=m, n_features=n_features,
                                             n_classes=n_classes, lam=lam, bias=bias)
    numgrad = numerical_gradient(f, theta)
    # Measured 6e-12 .. 1.3e-10 for these cases with eps = 1e-4 (the central
    # difference's own error, which shrinks as eps^2).
    assert relative_difference(numgrad, grad) < 2e-10


def test_gradient_check_detects_a_decayed_bias():
    """The check can fail: adding lam * b to dJ/db (decaying the bias) is caught."""
    lam = 0.1
    f, theta, grad = softmax_gradcheck_stage(0, lam=lam)
    n_features, n_classes = 8, 4
    wrong = grad.copy()
    unpack_softmax(wrong, n_features, n_classes)["b"][...] += lam * unpack_softmax(theta, n_features, n_classes)["b"]
    assert relative_difference(numerical_gradient(f, theta), wrong) > 1e-3


def test_gradcheck_stage_returns_a_fresh_theta_and_a_consistent_gradient():
    f, theta, grad = softmax_gradcheck_stage(3)
    assert theta.dtype == grad.dtype == np.float64
    assert theta.shape == grad.shape == (4 * 8 + 4,)
    f2, theta2, grad2 = softmax_gradcheck_stage(3)
    np.testing.assert_array_equal(theta2, theta)   # same seed, same problem
    np.testing.assert_array_equal(grad2, grad)
    before = f(theta)
    theta += 1.0                                   # the caller owns theta ...
    assert f(theta) != before
    np.testing.assert_array_equal(theta2, softmax_gradcheck_stage(3)[1])   # ... not shared


@pytest.mark.parametrize("m, n_features, n_classes, lam, bias", [
    (1, 1, 2, 0.0, True),
    (13, 6, 5, 1e-4, True),
    (13, 6, 5, 1e-4, False),
    (30, 4, 3, 0.5, True),
])
def test_agrees_with_the_per_example_loop(m, n_features, n_classes, lam, bias):
    X, y, params = random_problem(1, m, n_features, n_classes, bias, scale=2.0)
    cost, grads = softmax_cost_and_grad(params, X, y, lam=lam)
    loop_cost, loop_grads = loop_softmax_cost_and_grad(params, X, y, lam=lam)
    assert cost == pytest.approx(loop_cost, rel=1e-10)
    assert set(grads) == set(loop_grads) == set(params)
    for name in params:
        assert grads[name].shape == params[name].shape
        np.testing.assert_allclose(grads[name], loop_grads[name], rtol=1e-10, atol=1e-15)


def test_float32_params_compute_in_float32():
    X, y, params64 = random_problem(2, 25, 7, 3)
    params32 = {name: array.astype(np.float32) for name, array in params64.items()}
    cost64, grads64 = softmax_cost_and_grad(params64, X, y, lam=1e-3)
    cost32, grads32 = softmax_cost_and_grad(params32, X, y, lam=1e-3)
    assert cost32 == pytest.approx(cost64, rel=1e-5)
    for name in params64:
        assert grads32[name].dtype == np.float32
        np.testing.assert_allclose(grads32[name], grads64[name], rtol=1e-4, atol=1e-6)
    assert predict_proba(params32, X).dtype == np.float32


# ---------------------------------------------------------------------------
# Numerical stability and probabilities
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("logit", [1e3, 1e5, 1e300])
def test_huge_logits_give_exact_finite_cost_without_warnings(logit):
    # One example x = 1, two classes with logits (logit, 0), true class 1:
    # J = log(1 + exp(logit)) = logit to double precision, p = (1, 0),
    # dJ/dW = (P - Y).T x = [[1], [-1]].
    params = {"W": np.array([[logit], [0.0]]), "b": np.zeros(2)}
    X = np.ones((1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cost, grads = softmax_cost_and_grad(params, X, np.array([1]), lam=0.0)
        right_cost, right_grads = softmax_cost_and_grad(params, X, np.array([0]), lam=0.0)
        P = predict_proba(params, X)
    assert cost == logit
    np.testing.assert_array_equal(grads["W"], [[1.0], [-1.0]])
    np.testing.assert_array_equal(grads["b"], [1.0, -1.0])
    assert right_cost == 0.0
    np.testing.assert_array_equal(right_grads["W"], [[0.0], [0.0]])
    np.testing.assert_array_equal(P, [[1.0, 0.0]])


def test_huge_logits_in_float32_stay_finite():
    params = {"W": np.array([[3e4, -3e4, 0.0]], dtype=np.float32).T.copy(), "b": np.zeros(3, np.float32)}
    X = np.array([[1.0], [-1.0]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cost, grads = softmax_cost_and_grad(params, X, np.array([2, 2]), lam=0.0)
    assert cost == pytest.approx(3e4, rel=1e-6)        # each example pays 3e4
    assert all(np.isfinite(g).all() for g in grads.values())


def test_overflowing_logits_raise_instead_of_returning_nan():
    params = {"W": np.array([[1e200], [0.0]])}
    with pytest.raises(ValueError, match="overflow"):
        softmax_cost_and_grad(params, np.array([[1e200]]), np.array([0]), lam=0.0)


def test_probabilities_are_the_softmax_and_sum_to_one():
    X, _, params = random_problem(4, 40, 6, 7, scale=3.0)
    P = predict_proba(params, X)
    Z = X @ params["W"].T + params["b"]                          # moderate logits
    naive = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    assert P.shape == (40, 7)
    np.testing.assert_allclose(P, naive, rtol=1e-13, atol=0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=8 * np.finfo(float).eps)
    np.testing.assert_array_equal(predict(params, X), np.argmax(naive, axis=1))


def test_probabilities_sum_to_one_for_spread_out_logits():
    X, _, params = random_problem(5, 40, 6, 7, scale=300.0)    # logits in the thousands
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        P = predict_proba(params, X)
    assert np.isfinite(P).all()
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=8 * np.finfo(float).eps)


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------

CENTERS = [[3, 0, 0, 0, 1], [0, 3, 0, 0, 1], [0, 0, 3, 0, 1]]


def test_training_separates_separable_blobs():
    X, y = blobs(0, 50, CENTERS, spread=0.5)
    X_test, y_test = blobs(1, 50, CENTERS, spread=0.5)
    params, info = train_softmax(X, y, 3, lam=1e-4, max_iter=400)
    assert info["converged"], info["message"]
    assert accuracy(y, predict(params, X)) == 1.0
    assert accuracy(y_test, predict(params, X_test)) >= 0.98
    # L-BFGS stopped at a minimum of the convex J: the gradient is ~0 there.
    cost, grads = softmax_cost_and_grad(params, X, y, lam=1e-4)
    assert cost == pytest.approx(info["cost"], rel=1e-12)
    assert max(np.abs(g).max() for g in grads.values()) < 1e-4


def test_the_bias_is_what_separates_classes_on_one_side_of_the_origin():
    # One feature, class 0 near x = 1 and class 1 near x = 3. Without a bias
    # the boundary sits at x = 0, so one class wins everywhere.
    X, y = blobs(2, 50, [[1.0], [3.0]], spread=0.3)
    with_bias, _ = train_softmax(X, y, 2, bias=True)
    without_bias, _ = train_softmax(X, y, 2, bias=False)
    assert set(with_bias) == {"W", "b"} and set(without_bias) == {"W"}
    assert accuracy(y, predict(with_bias, X)) >= 0.98
    assert accuracy(y, predict(without_bias, X)) == 0.5


def test_training_respects_max_iter_and_does_not_touch_params0():
    X, y = blobs(3, 30, CENTERS, spread=1.0)
    params0 = init_softmax_params(5, 3)
    params0["W"][...] = 0.01
    copy0 = {name: array.copy() for name, array in params0.items()}
    params, info = train_softmax(X, y, 3, max_iter=2, params0=params0)
    assert info["n_iter"] <= 2 and not info["converged"]
    for name in copy0:
        np.testing.assert_array_equal(params0[name], copy0[name])


def test_labels_may_skip_classes():
    X, y = blobs(4, 30, CENTERS, spread=0.5)
    y = np.where(y == 2, 3, y)                      # classes 0, 1, 3 of n_classes = 4
    params, _ = train_softmax(X, y, 4)
    assert params["W"].shape == (4, 5)
    assert 2 not in predict(params, X)
    assert accuracy(y, predict(params, X)) == 1.0


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def test_accuracy_on_hand_made_cases():
    assert accuracy([0, 1, 2, 2], [0, 2, 2, 2]) == 0.75
    assert accuracy(np.array([3]), np.array([3])) == 1.0
    assert accuracy(np.array([1, 1], dtype=np.uint8), np.array([0, 0])) == 0.0


def test_confusion_matrix_on_a_hand_made_case():
    y_true = [0, 0, 1, 1, 1, 2, 2, 0]
    y_pred = [0, 1, 1, 1, 2, 2, 0, 0]
    expected = np.array([
        [2, 1, 0],   # true 0: two right, one called 1
        [0, 2, 1],   # true 1: two right, one called 2
        [1, 0, 1],   # true 2: one right, one called 0
    ])
    C = confusion_matrix(y_true, y_pred, 3)
    np.testing.assert_array_equal(C, expected)
    assert C.dtype == np.int64
    assert np.trace(C) / C.sum() == accuracy(y_true, y_pred)
    np.testing.assert_array_equal(confusion_matrix([1], [1], 4), np.eye(4, dtype=int) * [0, 1, 0, 0])


def test_pack_and_unpack_round_trip_with_views():
    _, _, params = random_problem(6, 2, 5, 3)
    theta = pack_softmax(params)
    assert theta.shape == (3 * 5 + 3,)
    np.testing.assert_array_equal(theta[:15], params["W"].ravel())
    unpacked = unpack_softmax(theta, 5, 3)
    for name in params:
        np.testing.assert_array_equal(unpacked[name], params[name])
    unpacked["b"][0] = 42.0
    assert theta[15] == 42.0                         # views, not copies
    assert set(unpack_softmax(theta[:15], 5, 3, bias=False)) == {"W"}


# ---------------------------------------------------------------------------
# Bad input: clear errors naming the argument
# ---------------------------------------------------------------------------

_X, _Y, _P = random_problem(7, 4, 3, 2)


def _with(**changes):
    """Arguments of softmax_cost_and_grad with some replaced."""
    args = {"params": _P, "X": _X, "y": _Y, "lam": 1e-4}
    args.update(changes)
    return args


def _cost(args):
    return softmax_cost_and_grad(args["params"], args["X"], args["y"], lam=args["lam"])


BAD_COST_INPUTS = [
    # (changes, exception, text in the message)
    ({"y": _Y.astype(float)}, TypeError, "y: expected integer labels"),
    ({"y": _Y.astype(bool)}, TypeError, "y: expected integer labels"),
    ({"y": np.array([0, 1, 2, 0])}, ValueError, "y: expected labels in 0 .. 1"),
    ({"y": np.array([0, -1, 1, 0])}, ValueError, "y: expected labels in 0 .. 1"),
    ({"y": _Y[:3]}, ValueError, "y: expected 4 labels"),
    ({"y": _Y.reshape(2, 2)}, ValueError, "y: expected a 1-D array"),
    ({"X": np.where(_X > 0.5, np.nan, _X)}, ValueError, "X: expected finite values"),
    ({"X": _X[:, :2]}, ValueError, "X: expected shape (m, 3)"),
    ({"X": _X[0]}, ValueError, "X: expected a 2-D array"),
    ({"X": _X.astype(str)}, TypeError, "X: expected an array of real numbers"),
    ({"lam": -1e-4}, ValueError, "lam: expected a weight decay >= 0"),
    ({"lam": float("nan")}, TypeError, "lam: expected a finite real number"),
    ({"lam": "1e-4"}, TypeError, "lam: expected a finite real number"),
    ({"params": [_P["W"]]}, TypeError, "params: expected a dict"),
    ({"params": {"W1": _P["W"]}}, ValueError, "params: expected keys W or W, b"),
    ({"params": {"W": _P["W"][0]}}, ValueError, "params['W']: expected a 2-D array"),
    ({"params": {"W": _P["W"][:1]}}, ValueError, "n_classes >= 2"),
    ({"params": {"W": _P["W"], "b": np.zeros(3)}}, ValueError, "params['b']: expected shape (2,)"),
    ({"params": {"W": _P["W"].astype(int)}}, TypeError, "params['W']: expected dtype float32 or float64"),
    ({"params": {"W": _P["W"], "b": _P["b"].astype(np.float32)}}, TypeError, "params['b']: expected dtype float64"),
    ({"params": {"W": _P["W"] * np.inf}}, ValueError, "params['W']: expected finite values"),
    ({"params": {"W": _P["W"].tolist()}}, TypeError, "params['W']: expected a numpy array"),
]


@pytest.mark.parametrize("changes, exception, text", BAD_COST_INPUTS)
def test_bad_input_to_the_cost_is_rejected_clearly(changes, exception, text):
    args = _with(**changes)
    with pytest.raises(exception) as caught:
        _cost(args)
    assert text in str(caught.value)
    if set(changes) <= {"params", "X"}:                # the same rules for prediction
        for predictor in (predict_proba, predict):
            with pytest.raises(exception) as caught:
                predictor(args["params"], args["X"])
            assert text in str(caught.value)


BAD_TRAINING_INPUTS = [
    ({"n_classes": 1}, ValueError, "n_classes: expected at least 2 classes"),
    ({"n_classes": 2.0}, TypeError, "n_classes: expected a positive integer"),
    ({"y": np.array([0, 1, 2, 1])}, ValueError, "y: expected labels in 0 .. 1 (n_classes=2), got values in 0 .. 2"),
    ({"max_iter": 0}, ValueError, "max_iter: expected a positive integer"),
    ({"bias": "yes"}, TypeError, "bias: expected True or False"),
    ({"lam": -1.0}, ValueError, "lam: expected a weight decay >= 0"),
    ({"X": np.zeros((4, 0))}, ValueError, "X: expected shape (m, n_features)"),
    ({"X": [[0.0, 1.0], [1.0]]}, TypeError, "X: expected a 2-D array of numbers"),
    ({"X": np.full((4, 3), np.inf)}, ValueError, "X: expected finite values"),
    ({"params0": {"W": np.zeros((2, 4))}}, ValueError, "params0: expected shapes"),
]


@pytest.mark.parametrize("changes, exception, text", BAD_TRAINING_INPUTS)
def test_bad_input_to_training_is_rejected_clearly(changes, exception, text):
    args = {"X": _X, "y": _Y, "n_classes": 2, "lam": 1e-4, "max_iter": 5, "bias": True, "params0": None}
    args.update(changes)
    with pytest.raises(exception) as caught:
        train_softmax(args["X"], args["y"], args["n_classes"], args["lam"], args["max_iter"],
                      bias=args["bias"], params0=args["params0"])
    assert text in str(caught.value)


@pytest.mark.parametrize("call, exception, text", [
    (lambda: accuracy([0, 1], [0, 1, 1]), ValueError, "y_pred: expected 2 labels, one per row of y_true, got 3"),
    (lambda: accuracy([], []), ValueError, "y_true: expected at least one label"),
    (lambda: accuracy([0.0, 1.0], [0, 1]), TypeError, "y_true: expected integer labels"),
    (lambda: confusion_matrix([0, 1], [0, 3], 3), ValueError, "y_pred: expected labels in 0 .. 2"),
    (lambda: confusion_matrix([0, 1], [0, 1], 1), ValueError, "n_classes: expected at least 2"),
    (lambda: unpack_softmax(np.zeros(7), 3, 2), ValueError, "theta: expected a 1-D array of length 8"),
    (lambda: init_softmax_params(3, 2, dtype=np.int32), TypeError, "dtype: expected float32 or float64"),
])
def test_bad_input_to_the_helpers_is_rejected_clearly(call, exception, text):
    with pytest.raises(exception) as caught:
        call()
    assert text in str(caught.value)
