"""Softmax regression with weight decay, as in UFLDL's softmax exercise, in plain NumPy.

Layout
------
UFLDL puts one example per column and writes theta_j^T x for the score of
class j. Here, as in ``sparse_autoencoder.py``, the rows of ``X`` are
examples:

    X  (m, n_features)     one example per row
    y  (m,)                integer labels in 0 .. n_classes-1 (UFLDL: 1 .. k)
    W  (n_classes, n_features)   row j is UFLDL's theta_j
    b  (n_classes,)        a bias per class (optional; UFLDL has none)

    notes (example i, a column)          this code (all m examples, rows)
    theta_j^T x + b_j                    Z = X @ W.T + b               # (m, n_classes)
    sum_i x_i (1{y_i = j} - p_ij)        (Y - P).T @ X                 # (n_classes, n_features)

The cost (UFLDL's J)
--------------------
    p_ij = exp(z_ij) / sum_l exp(z_il)          P (m, n_classes), rows sum to 1
    J = -(1/m) sum_i log p_{i, y_i}  +  (lam/2) ||W||_F^2

and its gradient, with Y the one-hot matrix of y (Y_ij = 1{y_i = j}):

    dJ/dW = -(1/m) (Y - P).T @ X + lam * W      (n_classes, n_features)
    dJ/db = -(1/m) sum over rows of (Y - P)      (n_classes,)

The bias is never decayed, as in the autoencoder. ``lam`` is UFLDL's lambda
(``lambda`` is a Python keyword).

Numerical stability: log p_ij = z_ij - max_l z_il - log sum_l exp(z_il - max_l z_il)
(log-sum-exp). Every exponent is <= 0, so nothing overflows and the largest
term of each sum is exactly 1, so no log(0): the cost stays finite and no
warning is raised for any finite logits. UFLDL's exercise subtracts the same
per-example maximum.

The bias
--------
UFLDL's exercise has no bias. This module includes one by default
(``bias=True``): with it, the classifier can shift each class's score by a
constant, which a bias-free model can do only through a constant input
feature, and neither sigmoid features (all in (0, 1)) nor pixels (mostly 0)
provide one. A bias costs n_classes parameters and is never decayed. Pass
``bias=False`` (or a params dict without "b") for UFLDL's exact model.

Overparameterization: adding one vector to every row of W (and one constant
to every b_j) leaves P unchanged. With lam > 0 the weight decay picks the
unique minimum-norm W; the bias stays determined only up to such a constant
(harmless: P, predictions and J are the same).

Dtype: the dtype of the params (float32 or float64) is the dtype of the
computation; ``X`` of another dtype is converted once, on entry. Training
(``train_softmax``) works in float64, the dtype of scipy's L-BFGS-B.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

# The matrix checker and the counters of sparse_autoencoder.py: one set of
# validation rules and messages for the whole project.
from sparse_autoencoder import split_theta
from saelab.checks.validation import DTYPES, check_count, check_dtype, check_matrix, plain_array

SOFTMAX_PARAM_NAMES = ("W", "b")


# ---------------------------------------------------------------------------
# Parameters: shapes, initialization, packing
# ---------------------------------------------------------------------------


def softmax_param_shapes(n_features, n_classes, bias=True) -> dict:
    """Shapes of the parameter arrays: W (n_classes, n_features), b (n_classes,)."""
    shapes = {"W": (n_classes, n_features)}
    if bias:
        shapes["b"] = (n_classes,)
    return shapes


def init_softmax_params(n_features, n_classes, *, bias=True, dtype=np.float64) -> dict:
    """All-zero parameters: W (n_classes, n_features) and, if bias, b (n_classes,).

    J is convex in (W, b), so the starting point changes the path of the
    optimizer, not the minimum it reaches; zeros (uniform probabilities
    1/n_classes) need no random numbers. UFLDL starts from 0.005 * randn.
    """
    n_features = check_count("n_features", n_features)
    n_classes = _check_n_classes(n_classes)
    _check_bool("bias", bias)
    dtype = check_dtype("dtype", dtype)
    shapes = softmax_param_shapes(n_features, n_classes, bias)
    return {name: np.zeros(shape, dtype=dtype) for name, shape in shapes.items()}


def pack_softmax(params) -> np.ndarray:
    """Flatten params into one 1-D vector theta = [W, b] (W row-major; b if present).

    Length n_classes * n_features (+ n_classes with a bias); the params' dtype.
    """
    params = check_softmax_params(params)
    return np.concatenate([np.ravel(params[name]) for name in SOFTMAX_PARAM_NAMES if name in params])


def unpack_softmax(theta, n_features, n_classes, bias=True) -> dict:
    """Inverse of ``pack_softmax``: views into ``theta``, not copies."""
    n_features = check_count("n_features", n_features)
    n_classes = _check_n_classes(n_classes)
    _check_bool("bias", bias)
    return split_theta(theta, softmax_param_shapes(n_features, n_classes, bias),
                       f"n_features={n_features}, n_classes={n_classes}, bias={bias}")


# ---------------------------------------------------------------------------
# Cost, gradient, probabilities
# ---------------------------------------------------------------------------


def softmax_cost_and_grad(params, X, y, *, lam=1e-4):
    """UFLDL's softmax cost J and its gradient, vectorized over the m rows of X.

    params: dict with W (n_classes, n_features) and optionally b (n_classes,),
            float32 or float64 (the computation's dtype).
    X:      (m, n_features), one example per row, finite.
    y:      (m,) integer labels in 0 .. n_classes-1.
    lam:    weight decay >= 0 (W only, never b).

    Returns (cost, grads): cost a Python float, grads a dict with the keys,
    shapes and dtype of params.

        Z = X @ W.T + b                                    (m, n_classes)
        log P = Z - logsumexp(Z, over each row)            (m, n_classes)
        J = -(1/m) sum_i log P[i, y_i] + (lam/2) ||W||_F^2
        G = P - Y      (Y one-hot of y)                    (m, n_classes)
        dJ/dW = G.T @ X / m + lam * W                      (n_classes, n_features)
        dJ/db = sum of the rows of G / m                   (n_classes,)
    """
    params = check_softmax_params(params)
    X = _check_X(X, params)
    y = check_labels(y, X.shape[0], params["W"].shape[0])
    lam = _check_lam(lam)
    return _cost_and_grad(params, X, y, lam)


def predict_proba(params, X):
    """Class probabilities P (m, n_classes), p_ij = exp(z_ij) / sum_l exp(z_il), rows sum to 1."""
    params = check_softmax_params(params)
    X = _check_X(X, params)
    return np.exp(_log_probabilities(params, X))


def predict(params, X):
    """Predicted labels (m,): argmax_j z_ij (the most probable class; first on ties)."""
    params = check_softmax_params(params)
    X = _check_X(X, params)
    return np.argmax(_logits(params, X), axis=1)


def _logits(params, X):
    """Z = X @ W.T + b (m, n_classes); raises if finite X and W overflow (|z| > ~1.8e308)."""
    with np.errstate(over="ignore", invalid="ignore"):  # replaced by the clear error below
        Z = X @ params["W"].T                           # (m, n_classes)
        if "b" in params:
            Z += params["b"]
    if not np.isfinite(Z).all():
        raise ValueError(
            "X, params: the logits X @ W.T + b overflowed to infinity; "
            "rescale X or W (expected |logits| below about 1e300)"
        )
    return Z


def _log_probabilities(params, X):
    """log P (m, n_classes) by log-sum-exp: Z - max - log(sum(exp(Z - max)))."""
    Z = _logits(params, X)                              # (m, n_classes)
    with np.errstate(over="ignore"):                    # z - max below -1.8e308: -inf, p = 0
        Z -= Z.max(axis=1, keepdims=True)               # every row's max is now 0
    Z -= np.log(np.exp(Z).sum(axis=1, keepdims=True))   # sum >= 1: log is finite
    return Z


def _cost_and_grad(params, X, y, lam):
    """softmax_cost_and_grad without the checks (the optimizer's inner loop)."""
    W = params["W"]
    m = X.shape[0]
    rows = np.arange(m)
    log_P = _log_probabilities(params, X)               # (m, n_classes)
    cost = -float(log_P[rows, y].sum()) / m
    if lam > 0:                                         # (lam/2) ||W||_F^2
        flat_W = W.ravel()
        cost += 0.5 * lam * float(flat_W @ flat_W)

    G = np.exp(log_P, out=log_P)                        # P, in place of log P
    G[rows, y] -= 1                                     # G = P - Y, (m, n_classes)
    grads = {"W": G.T @ X}                              # (n_classes, n_features)
    grads["W"] /= m
    grads["W"] += lam * W
    if "b" in params:
        grads["b"] = G.sum(axis=0) / m                  # (n_classes,)
    return cost, grads


# ---------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------


def train_softmax(X, y, n_classes, lam=1e-4, max_iter=400, *, bias=True, params0=None):
    """Minimize J with scipy's L-BFGS-B (jac=True), in float64.

    X: (m, n_features), finite; y: (m,) integer labels in 0 .. n_classes-1;
    n_classes >= 2 (classes absent from y are allowed); lam >= 0: weight
    decay on W (UFLDL's 1e-4); max_iter >= 1: L-BFGS iterations (UFLDL: 400
    with minFunc); bias: include b (see the module docstring);
    params0: optional starting params (default: zeros, see
    ``init_softmax_params``), whose shapes must match.

    Returns (params, info): params a dict W (n_classes, n_features)
    [, b (n_classes,)] in float64; info a dict with ``cost`` (final J),
    ``n_iter``, ``n_evals``, ``converged`` (scipy's success flag: False when
    max_iter was reached first) and ``message``.
    """
    from scipy.optimize import minimize  # scipy only for training

    n_classes = _check_n_classes(n_classes)
    _check_bool("bias", bias)
    X = _check_X_for_training(X)
    n_features = X.shape[1]
    y = check_labels(y, X.shape[0], n_classes)
    lam = _check_lam(lam)
    max_iter = check_count("max_iter", max_iter)
    if params0 is None:
        params0 = init_softmax_params(n_features, n_classes, bias=bias)
    else:
        params0 = check_softmax_params(params0, name="params0")
        expected = softmax_param_shapes(n_features, n_classes, bias)
        got = {name: params0[name].shape for name in params0}
        if got != expected:
            raise ValueError(f"params0: expected shapes {expected} (from X, n_classes, bias), got {got}")
    theta0 = pack_softmax(params0).astype(np.float64)    # a copy, never params0 itself

    def objective(theta):
        cost, grads = _cost_and_grad(unpack_softmax(theta, n_features, n_classes, bias), X, y, lam)
        return cost, np.concatenate([np.ravel(grads[name]) for name in SOFTMAX_PARAM_NAMES if name in grads])

    result = minimize(objective, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter})
    params = unpack_softmax(np.array(result.x, dtype=np.float64), n_features, n_classes, bias)
    info = {
        "cost": float(result.fun),
        "n_iter": int(result.nit),
        "n_evals": int(result.nfev),
        "converged": bool(result.success),
        "message": str(result.message),
    }
    return params, info


# ---------------------------------------------------------------------------
# Evaluation helpers
# ---------------------------------------------------------------------------


def accuracy(y_true, y_pred) -> float:
    """Fraction of examples with y_pred == y_true; both 1-D integer arrays of one length m >= 1."""
    y_true = _check_label_vector("y_true", y_true)
    y_pred = _check_label_vector("y_pred", y_pred, length=y_true.shape[0], other="y_true")
    return float(np.mean(y_true == y_pred))


def confusion_matrix(y_true, y_pred, n_classes) -> np.ndarray:
    """C (n_classes, n_classes) of int64: C[i, j] = number of examples of true class i predicted j.

    Rows are true classes, columns predicted ones; the diagonal holds the
    correct predictions and C.sum() == m. Labels must lie in 0 .. n_classes-1.
    """
    n_classes = _check_n_classes(n_classes)
    y_true = _check_label_vector("y_true", y_true)
    y_true = check_labels(y_true, y_true.shape[0], n_classes, name="y_true")
    y_pred = check_labels(y_pred, y_true.shape[0], n_classes, name="y_pred", other="y_true")
    counts = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).astype(np.int64)


# ---------------------------------------------------------------------------
# Gradient check
# ---------------------------------------------------------------------------


def softmax_gradcheck_stage(rng=0, *, m=20, n_features=8, n_classes=4, lam=1e-4, bias=True):
    """A small random softmax problem for the gradient checker: (f, theta, grad).

    f(theta) -> J (a Python float) for a 1-D float64 theta = [W, b] (the
    layout of ``pack_softmax``); theta a fresh float64 vector, standard
    normal, safe to perturb in place; grad the analytic gradient of f at
    theta, from ``softmax_cost_and_grad``. X is (m, n_features) uniform on
    [0, 1] (like pixels and sigmoid features), y uniform in
    0 .. n_classes-1, all drawn from ``numpy.random.default_rng(rng)``. Use:

        f, theta, grad = softmax_gradcheck_stage()
        relative_difference(numerical_gradient(f, theta), grad)   # about 5e-11

    Weights of size 1 keep the probabilities away from uniform. With tiny
    weights (all p near 1/n_classes) the central difference's own error
    (proportional to eps^2) is larger, about 5e-10 at eps = 1e-4.
    """
    from saelab.checks.validation import as_generator

    rng = as_generator(rng)
    m = check_count("m", m)
    n_features = check_count("n_features", n_features)
    n_classes = _check_n_classes(n_classes)
    lam = _check_lam(lam)
    _check_bool("bias", bias)
    X = rng.uniform(0.0, 1.0, size=(m, n_features))         # (m, n_features)
    y = rng.integers(0, n_classes, size=m)                  # (m,)
    size = sum(int(np.prod(s)) for s in softmax_param_shapes(n_features, n_classes, bias).values())
    theta = rng.standard_normal(size)                       # [W, b], packed

    def f(theta_):
        params = unpack_softmax(theta_, n_features, n_classes, bias)
        return softmax_cost_and_grad(params, X, y, lam=lam)[0]

    _, grads = softmax_cost_and_grad(unpack_softmax(theta, n_features, n_classes, bias), X, y, lam=lam)
    return f, theta, pack_softmax(grads)


# ---------------------------------------------------------------------------
# Validation: clear errors at the entry points
# ---------------------------------------------------------------------------


def check_softmax_params(params, name="params") -> dict:
    """Return params if it is a well-formed softmax parameter dict, else raise.

    Expected: a dict with key W, a 2-D array (n_classes, n_features) with
    n_classes >= 2, and optionally key b, a 1-D array (n_classes,); both of
    one dtype, float32 or float64; all values finite.
    """
    if not isinstance(params, dict):
        raise TypeError(f"{name}: expected a dict with key W (and optionally b), got {type(params).__name__}")
    keys = set(params)
    if keys not in ({"W"}, {"W", "b"}):
        raise ValueError(
            f"{name}: expected keys W or W, b, got {', '.join(map(str, sorted(keys, key=str))) or 'none'}"
        )
    for key in params:
        if not isinstance(params[key], np.ndarray):
            raise TypeError(f"{name}['{key}']: expected a numpy array, got {type(params[key]).__name__}")
    plain = {key: plain_array(f"{name}['{key}']", value) for key, value in params.items()}
    if any(plain[key] is not params[key] for key in params):
        params = plain                                # matrix, masked, memmap: as plain arrays
    W = params["W"]
    if W.ndim != 2 or W.shape[0] < 2 or W.shape[1] < 1:
        raise ValueError(
            f"{name}['W']: expected a 2-D array (n_classes, n_features) with n_classes >= 2, got shape {W.shape}"
        )
    if "b" in params and params["b"].shape != (W.shape[0],):
        raise ValueError(
            f"{name}['b']: expected shape ({W.shape[0]},) to match W {W.shape}, got {params['b'].shape}"
        )
    if W.dtype not in DTYPES:
        raise TypeError(f"{name}['W']: expected dtype float32 or float64, got {W.dtype}")
    for key in params:
        if params[key].dtype != W.dtype:
            raise TypeError(f"{name}['{key}']: expected dtype {W.dtype} like W, got {params[key].dtype}")
        if not np.isfinite(params[key]).all():
            raise ValueError(f"{name}['{key}']: expected finite values, found NaN or infinity")
    return params


def check_labels(y, m, n_classes, name="y", other="the rows of X") -> np.ndarray:
    """Return y as a 1-D intp array of length m with values in 0 .. n_classes-1, else raise.

    Labels must have an integer dtype (not bool, not float: use
    y.astype(int) after checking that the values are whole numbers).
    """
    y = _check_label_vector(name, y, length=m, other=other)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(
            f"{name}: expected labels in 0 .. {n_classes - 1} (n_classes={n_classes}), "
            f"got values in {y.min()} .. {y.max()}"
        )
    return y.astype(np.intp, copy=False)


def _check_label_vector(name, y, length=None, other=None):
    y = plain_array(name, y)                          # masked labels with values masked are refused
    if not isinstance(y, np.ndarray):
        try:
            y = np.asarray(y)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name}: expected a 1-D array of integer labels, got {type(y).__name__}") from exc
        if y.size == 0:
            y = y.astype(np.intp)                     # [] is float64 to NumPy
    if y.dtype.kind not in "iu":
        raise TypeError(
            f"{name}: expected integer labels, got dtype {y.dtype}"
            + (" (convert with y.astype(int))" if y.dtype.kind == "f" else "")
        )
    if y.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of labels, got shape {y.shape}")
    if length is None and y.shape[0] < 1:
        raise ValueError(f"{name}: expected at least one label, got shape {y.shape}")
    if length is not None and y.shape[0] != length:
        raise ValueError(f"{name}: expected {length} labels, one per row of {other}, got {y.shape[0]}")
    return y


def _check_X(X, params):
    """X as a 2-D (m, n_features) array of the params' dtype, finite, or raise."""
    return check_matrix("X", X, params["W"].shape[1], params["W"].dtype)


def _check_X_for_training(X):
    """X as a 2-D float64 (m, n_features) array, n_features >= 1 taken from X, finite, or raise."""
    X = plain_array("X", X)
    try:
        shape = np.shape(X)
    except Exception:  # ragged lists: let _check_matrix word the error
        shape = ()
    width = shape[1] if len(shape) == 2 and shape[1] >= 1 else "n_features"
    return check_matrix("X", X, width, np.float64)


def _check_n_classes(n_classes):
    n_classes = check_count("n_classes", n_classes)
    if n_classes < 2:
        raise ValueError(f"n_classes: expected at least 2 classes, got {n_classes}")
    return n_classes


def _check_lam(lam):
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real) or not np.isfinite(lam):
        raise TypeError(f"lam: expected a finite real number, got {lam!r}")
    if lam < 0:
        raise ValueError(f"lam: expected a weight decay >= 0, got {lam!r}")
    return float(lam)


def _check_bool(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


# ---------------------------------------------------------------------------
# The literal reference: one example and one class at a time
# ---------------------------------------------------------------------------


def loop_softmax_cost_and_grad(params, X, y, *, lam=1e-4):
    """UFLDL's softmax cost and gradient, one example and one class at a time.

    Same arguments and return value as ``softmax.softmax_cost_and_grad``:
    params has W (k, n) (row j is UFLDL's theta_j) and optionally b (k,);
    X is (m, n) and row i is UFLDL's x^(i), taken as a column; y holds the
    labels 0 .. k-1 (UFLDL counts from 1). Equations, literally:

        p(y = j | x) = exp(theta_j^T x + b_j) / sum_l exp(theta_l^T x + b_l)
        J = -(1/m) sum_i sum_j 1{y_i = j} log p(y_i = j | x_i) + (lam/2) sum_j sum_f theta_jf^2
        grad_theta_j J = -(1/m) sum_i x_i (1{y_i = j} - p(y_i = j | x_i)) + lam theta_j
        grad_b_j J     = -(1/m) sum_i (1{y_i = j} - p(y_i = j | x_i))

    Before exponentiating, the largest score of the example is subtracted
    from every score, as UFLDL's exercise advises (p is unchanged).
    """
    theta = np.asarray(params["W"], dtype=np.float64)
    k, n = theta.shape
    b = np.asarray(params["b"], dtype=np.float64) if "b" in params else np.zeros(k)
    m = X.shape[0]

    cost = 0.0
    grad_theta = [np.zeros((n, 1)) for _ in range(k)]      # one column per class
    grad_b = [0.0] * k
    for i in range(m):
        x = X[i].reshape(-1, 1).astype(np.float64)          # the column x^(i)
        scores = [(theta[j].reshape(-1, 1).T @ x).item() + float(b[j]) for j in range(k)]
        largest = max(scores)
        exps = [math.exp(s - largest) for s in scores]
        total = sum(exps)
        for j in range(k):
            p = exps[j] / total
            indicator = 1.0 if int(y[i]) == j else 0.0
            if indicator:
                cost -= math.log(p)
            grad_theta[j] += -x * (indicator - p)
            grad_b[j] += -(indicator - p)

    decay = 0.0
    for j in range(k):
        for f_ in range(n):
            decay += theta[j, f_] ** 2
    cost = cost / m + (lam / 2) * decay

    grads = {"W": np.vstack([(grad_theta[j] / m).T for j in range(k)]) + lam * theta}
    if "b" in params:
        grads["b"] = np.array(grad_b) / m
    return float(cost), grads
