"""The notes' backpropagation, one example at a time: read this first.

``loop_cost_and_grad`` follows the notes line by line. Each example x is a
column (n_visible, 1), as in the notes; the sums over the examples i are
Python loops; the names are the notes' (z2, a2, z3, a3, rho_hat, delta3,
delta2). Read it beside the notes; then write the same computation for all
m examples at once yourself in ``exercise.py``, and only then read
``cost_and_grad`` in ``sparse_autoencoder.py``, its solution, where each
column x^(i) becomes row i of X (docs/derivation.md shows how one turns into
the other).

It is slow (a Python loop over the examples) and is used as the literal
reference that the tests hold both vectorized versions to, and that
``benchmarks/bench.py`` times. It shares no code with the model except the parameter
names, so that a mistake in one does not hide in the other.

The other models keep their own per-example loops beside them: softmax
regression in ``saelab/softmax.py``, ReLU + L1 and TopK at the end of
``modern_sae.py``, the stacked network at the end of ``stacked_autoencoder.py``.
"""

import math

import numpy as np


def f(z):
    """The sigmoid 1 / (1 + exp(-z)), written plainly (float64 use only)."""
    return 1.0 / (1.0 + np.exp(-z))


def loop_cost_and_grad(params, X, *, penalty="kl", rho=0.01, beta=3.0, lam=1e-4,
                       decoder="sigmoid"):
    """J and its gradient by the notes' per-example algorithm.

    Same arguments and return value as ``sparse_autoencoder.cost_and_grad``;
    X is (m, n_visible) and row i is the notes' x^(i), taken as a column.
    """
    W1, b1, W2, b2 = (np.asarray(params[k], dtype=np.float64) for k in ("W1", "b1", "W2", "b2"))
    b1 = b1.reshape(-1, 1)                      # columns, as in the notes
    b2 = b2.reshape(-1, 1)
    m = X.shape[0]

    # First pass: rho_hat_j = (1/m) sum_i a2_j(x^(i)).
    rho_hat = np.zeros_like(b1)
    for i in range(m):
        x = X[i].reshape(-1, 1).astype(np.float64)
        a2 = f(W1 @ x + b1)
        rho_hat += a2
    rho_hat /= m

    # Second pass: forward, cost, backpropagation, accumulate.
    dW1, db1 = np.zeros_like(W1), np.zeros_like(b1)
    dW2, db2 = np.zeros_like(W2), np.zeros_like(b2)
    squared_error = 0.0
    for i in range(m):
        x = X[i].reshape(-1, 1).astype(np.float64)
        z2 = W1 @ x + b1
        a2 = f(z2)
        z3 = W2 @ a2 + b2
        a3 = f(z3) if decoder == "sigmoid" else z3
        squared_error += 0.5 * float(np.sum((a3 - x) ** 2))

        if decoder == "sigmoid":
            delta3 = -(x - a3) * (a3 * (1 - a3))
        else:
            delta3 = -(x - a3)
        if penalty == "kl":
            sparsity_delta = beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))
        elif penalty == "l1":
            sparsity_delta = beta * np.ones_like(rho_hat)
        else:
            sparsity_delta = np.zeros_like(rho_hat)
        delta2 = (W2.T @ delta3 + sparsity_delta) * (a2 * (1 - a2))

        dW2 += delta3 @ a2.T
        db2 += delta3
        dW1 += delta2 @ x.T
        db1 += delta2

    cost = squared_error / m + (lam / 2) * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    if penalty == "kl":
        for j in range(rho_hat.shape[0]):
            r = float(rho_hat[j, 0])
            cost += beta * (rho * math.log(rho / r) + (1 - rho) * math.log((1 - rho) / (1 - r)))
    elif penalty == "l1":
        for i in range(m):
            x = X[i].reshape(-1, 1).astype(np.float64)
            cost += beta / m * float(np.sum(np.abs(f(W1 @ x + b1))))

    grads = {
        "W1": dW1 / m + lam * W1,
        "b1": (db1 / m).ravel(),
        "W2": dW2 / m + lam * W2,
        "b2": (db2 / m).ravel(),
    }
    return float(cost), grads
