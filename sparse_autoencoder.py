"""The sparse autoencoder of Andrew Ng's CS294A notes, in plain NumPy.

Read ``reference.py`` first (the notes' algorithm, one example at a time),
write it yourself in ``exercise.py`` (this file is its solution), then read
``cost_and_grad`` below: the same computation for all m examples at once,
one equation of the notes per line.

Layout. The notes put one example per column: x is a column of n_visible
values and z2 = W1 x + b1. Here the rows of ``X`` are the examples, so
``X`` is ``(m, n_visible)`` and each column of the notes becomes a row:

    notes (example i, a column)      this code (all m examples, rows)
    z2 = W1 x + b1                   z2 = X @ W1.T + b1          # (m, n_hidden)
    z3 = W2 a2 + b2                  z3 = a2 @ W2.T + b2         # (m, n_visible)
    W2^T delta3                      delta3 @ W2                 # (m, n_hidden)
    sum_i delta3 a2^T                delta3.T @ a2               # (n_visible, n_hidden)
    sum_i delta2 x^T                 delta2.T @ X                # (n_hidden, n_visible)

The weights keep the notes' shapes: ``W1`` is ``(n_hidden, n_visible)``,
``W2`` is ``(n_visible, n_hidden)``, ``b1`` is ``(n_hidden,)`` and ``b2`` is
``(n_visible,)``. ``lam`` is the notes' lambda (a Python keyword).

The cost J = reconstruction + weight decay + sparsity penalty, with the
penalty ``"kl"`` (the notes: beta sum_j KL(rho || rho_hat_j)), ``"l1"``
(beta times the mean over examples of sum_j |a2_j|) or ``"none"``, and the
decoder ``"sigmoid"`` (the notes: a3 = f(z3)) or ``"linear"`` (UFLDL's
linear decoder: a3 = z3). The dtype of ``params`` (float32 or float64) is
the dtype of the whole computation; ``X`` of another dtype is converted once.

``fast.py`` computes the same cost and gradient faster (tests hold the two
equal); training uses it. Argument checks live in ``saelab/checks/validation.py``.
"""

from __future__ import annotations

import numpy as np

from saelab.checks.validation import (DECODERS, DTYPES, PARAM_NAMES, PENALTIES, as_generator, check_A2,
                        check_call, check_choice, check_count, check_init, check_params,
                        check_X, param_shapes)

__all__ = ["init_params", "sigmoid", "kl_divergence", "clip_rho_hat", "cost_and_grad",
           "cost_terms", "encode", "decode", "pack", "unpack", "param_shapes",
           "check_params", "check_X", "as_generator",
           "PARAM_NAMES", "PENALTIES", "DECODERS", "DTYPES"]


def init_params(n_visible, n_hidden, rng=None, dtype=np.float64) -> dict:
    """UFLDL's initializeParameters.

    W1 (n_hidden, n_visible) and W2 (n_visible, n_hidden) are drawn uniformly
    from [-r, r] with r = sqrt(6 / (n_visible + n_hidden + 1)); b1 (n_hidden,)
    and b2 (n_visible,) are zero.

    rng: a ``numpy.random.Generator``, an int seed, or None (fresh entropy).
    dtype: float32 or float64, the dtype of every returned array.
    """
    n_visible, n_hidden, rng, dtype = check_init(n_visible, n_hidden, rng, dtype)
    r = np.sqrt(6.0 / (n_visible + n_hidden + 1))
    return {
        "W1": rng.uniform(-r, r, size=(n_hidden, n_visible)).astype(dtype),
        "b1": np.zeros(n_hidden, dtype=dtype),
        "W2": rng.uniform(-r, r, size=(n_visible, n_hidden)).astype(dtype),
        "b2": np.zeros(n_visible, dtype=dtype),
    }


def sigmoid(z):
    """The activation f(z) = 1 / (1 + exp(-z)), elementwise; f'(z) = f(z) (1 - f(z)).

    Computed as 0.5 * tanh(0.5 * z) + 0.5, the same function, which never
    overflows (exp(-z) does, for z below about -709). float32 stays float32.
    Its accuracy: docs/speed.md, "The sigmoid".
    """
    return 0.5 * np.tanh(0.5 * np.asarray(z)) + 0.5


def kl_divergence(rho, rho_hat):
    """KL(rho || rho_hat) = rho log(rho / rho_hat) + (1 - rho) log((1 - rho) / (1 - rho_hat)).

    Elementwise over rho_hat, which must lie strictly between 0 and 1.
    """
    return rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat))


def clip_rho_hat(rho_hat):
    """rho_hat kept in [eps, 1 - eps], eps the dtype's machine epsilon.

    A unit saturated on every example has rho_hat exactly 0 or 1 in floating
    point, where KL and its derivative are infinite. Clipping keeps both
    finite and changes no rho_hat that floating point can tell apart from
    0 and 1 by more than eps.

    rho_hat is a mean of sigmoid activations, so it lies in [0, 1]: a value
    beyond it by more than rounding (say a sum over the examples where the
    notes take the mean) raises a ValueError saying so instead of being
    clipped silently.
    """
    rho_hat = np.asarray(rho_hat)
    eps = np.finfo(rho_hat.dtype).eps
    if rho_hat.size and (rho_hat.max() > 1 + 64 * eps or rho_hat.min() < -64 * eps):
        raise ValueError(f"rho_hat: expected average activations in [0, 1], got values in "
                         f"[{rho_hat.min():.4g}, {rho_hat.max():.4g}]; rho_hat_j is the mean of "
                         f"a2_j over the m examples (a sum where the notes take the mean?)")
    return np.clip(rho_hat, eps, 1 - eps)


def cost_and_grad(params, X, *, penalty="kl", rho=0.01, beta=3.0, lam=1e-4,
                  decoder="sigmoid"):
    """The notes' cost J and its gradient, for all m rows of X at once.

    params:  W1 (n_hidden, n_visible), b1 (n_hidden,), W2 (n_visible, n_hidden),
             b2 (n_visible,); all float32 or all float64 (the computation's dtype).
    X:       (m, n_visible), one example per row; in [0, 1] for the sigmoid decoder.
    penalty: "kl" (the notes), "l1" or "none".   rho: target activation, 0 < rho < 1.
    beta:    sparsity weight >= 0.   lam: weight decay >= 0.
    decoder: "sigmoid" (the notes, a3 = f(z3)) or "linear" (a3 = z3).

    Returns (cost, grads): cost a Python float, grads a dict with the keys,
    shapes and dtype of params. A bad argument raises ValueError or
    TypeError naming it (``validation.check_call``).

    Each line below is one equation of the notes, in the notes' order.
    docs/derivation.md derives the backward pass from the notes'
    per-example one; ``fast.cost_and_grad`` computes the same numbers faster.
    """
    params, X, rho, beta, lam = check_call(params, X, penalty, rho, beta, lam, decoder)
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    m = X.shape[0]

    # Forward pass.
    z2 = X @ W1.T + b1                                     # (m, n_hidden)
    a2 = sigmoid(z2)                                       # (m, n_hidden)
    z3 = a2 @ W2.T + b2                                    # (m, n_visible)
    a3 = sigmoid(z3) if decoder == "sigmoid" else z3       # (m, n_visible)
    rho_hat = clip_rho_hat(a2.mean(axis=0))                # (n_hidden,): (1/m) sum_i a2_i

    # The cost J: reconstruction + weight decay + sparsity penalty.
    reconstruction = np.sum((a3 - X) ** 2) / (2 * m)
    weight_decay = (lam / 2) * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    if penalty == "kl":
        sparsity = beta * np.sum(kl_divergence(rho, rho_hat))
    elif penalty == "l1":
        sparsity = beta * np.sum(np.abs(a2)) / m
    else:
        sparsity = 0.0
    cost = reconstruction + weight_decay + sparsity

    # Backward pass: the error terms delta3 and delta2.
    if decoder == "sigmoid":
        delta3 = (a3 - X) * a3 * (1 - a3)                  # (m, n_visible); f'(z3) = a3 (1 - a3)
    else:
        delta3 = a3 - X                                    # (m, n_visible); linear: f'(z3) = 1
    if penalty == "kl":
        sparsity_delta = beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))   # (n_hidden,)
    elif penalty == "l1":
        sparsity_delta = beta * np.ones_like(rho_hat)      # (n_hidden,); d|a|/da = 1 for a = f(z) > 0
    else:
        sparsity_delta = np.zeros_like(rho_hat)            # (n_hidden,)
    delta2 = (delta3 @ W2 + sparsity_delta) * a2 * (1 - a2)   # (m, n_hidden); f'(z2) = a2 (1 - a2)

    # The gradient: sums over the examples, divided by m, plus weight decay.
    grad_W1 = delta2.T @ X / m + lam * W1                  # (n_hidden, n_visible)
    grad_b1 = delta2.sum(axis=0) / m                       # (n_hidden,)
    grad_W2 = delta3.T @ a2 / m + lam * W2                 # (n_visible, n_hidden)
    grad_b2 = delta3.sum(axis=0) / m                       # (n_visible,)
    return float(cost), {"W1": grad_W1, "b1": grad_b1, "W2": grad_W2, "b2": grad_b2}


def cost_terms(params, X, *, penalty="kl", rho=0.01, beta=3.0, lam=1e-4,
               decoder="sigmoid") -> dict:
    """The parts of J, from the forward pass alone (no gradient).

    Arguments as ``cost_and_grad``. Returns a dict of Python floats:
    ``reconstruction``, ``weight_decay``, ``sparsity``, ``cost`` (their sum,
    the notes' J) and ``mean_rho_hat`` (the mean over hidden units of
    rho_hat_j). The same lines as the first half of ``cost_and_grad``.
    """
    params, X, rho, beta, lam = check_call(params, X, penalty, rho, beta, lam, decoder)
    W1, W2 = params["W1"], params["W2"]
    m = X.shape[0]
    a2 = _encode(params, X)                                # (m, n_hidden)
    a3 = _decode(params, a2, decoder)                      # (m, n_visible)
    rho_hat = clip_rho_hat(a2.mean(axis=0))                # (n_hidden,)
    terms = {
        "reconstruction": np.sum((a3 - X) ** 2) / (2 * m),
        "weight_decay": (lam / 2) * (np.sum(W1 ** 2) + np.sum(W2 ** 2)),
        "sparsity": 0.0,
    }
    if penalty == "kl":
        terms["sparsity"] = beta * np.sum(kl_divergence(rho, rho_hat))
    elif penalty == "l1":
        terms["sparsity"] = beta * np.sum(np.abs(a2)) / m
    terms = {name: float(value) for name, value in terms.items()}
    terms["cost"] = sum(terms.values())
    terms["mean_rho_hat"] = float(rho_hat.mean())
    return terms


def encode(params, X):
    """The hidden activations a2 = f(X @ W1.T + b1), shape (m, n_hidden): the features.

    X: (m, n_visible), any finite values (no [0, 1] requirement).
    """
    params = check_params(params)
    X = check_X(X, params, decoder=None)
    return _encode(params, X)


def decode(params, A2, decoder="sigmoid"):
    """The reconstruction a3 from hidden activations A2 (m, n_hidden), shape (m, n_visible).

    z3 = A2 @ W2.T + b2; a3 = f(z3) for the sigmoid decoder, a3 = z3 for the linear one.
    """
    params = check_params(params)
    check_choice("decoder", decoder, DECODERS)
    A2 = check_A2(A2, params)
    return _decode(params, A2, decoder)


def _encode(params, X):
    return sigmoid(X @ params["W1"].T + params["b1"])                   # a2, (m, n_hidden)


def _decode(params, a2, decoder):
    z3 = a2 @ params["W2"].T + params["b2"]                             # (m, n_visible)
    return sigmoid(z3) if decoder == "sigmoid" else z3                  # a3


# ---------------------------------------------------------------------------
# Packing: one vector theta for the optimizer and the gradient checker
# ---------------------------------------------------------------------------

# The packed order is UFLDL's: theta = [W1, W2, b1, b2], each flattened in
# C (row-major) order.
PACK_ORDER = ("W1", "W2", "b1", "b2")


def pack(params) -> np.ndarray:
    """Flatten params into one 1-D vector theta = [W1, W2, b1, b2].

    Each block is flattened in row-major (C) order. The result has the
    params' dtype and length 2 * n_visible * n_hidden + n_hidden + n_visible.
    params is checked as by ``check_params`` (NaN and infinity allowed).
    """
    params = check_params(params, finite=False)
    return np.concatenate([np.ravel(params[name]) for name in PACK_ORDER])


def unpack(theta, n_visible, n_hidden) -> dict:
    """Inverse of ``pack``: views into ``theta``, not copies.

    Writing into a returned array writes into ``theta`` (this is what lets
    the gradient checker and scipy share one buffer with the model).
    """
    n_visible = check_count("n_visible", n_visible)
    n_hidden = check_count("n_hidden", n_hidden)
    shapes = param_shapes(n_visible, n_hidden)
    params = split_theta(theta, {name: shapes[name] for name in PACK_ORDER},
                          f"n_visible={n_visible}, n_hidden={n_hidden}")
    return {name: params[name] for name in PARAM_NAMES}


def split_theta(theta, shapes, described):
    """Views into the 1-D vector ``theta``, one per entry of ``shapes``, in order.

    shapes: dict name -> shape, in the packed order. ``described`` names the
    sizes in the error raised when theta is not a 1-D array of the total
    length. Shared by ``unpack`` and ``softmax.unpack_softmax``.
    """
    expected = sum(int(np.prod(shape)) for shape in shapes.values())
    if not isinstance(theta, np.ndarray) or theta.ndim != 1 or theta.size != expected:
        got = getattr(theta, "shape", type(theta).__name__)
        raise ValueError(
            f"theta: expected a 1-D array of length {expected} ({described}), got shape {got}"
        )
    views, start = {}, 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        views[name] = theta[start:start + size].reshape(shape)
        start += size
    return views
