"""The notes' backpropagation, one example at a time: read this first.

``loop_cost_and_grad`` follows the notes line by line. Each example x is a
column (n_visible, 1), as in the notes; the sums over the examples i are
Python loops; the names are the notes' (z2, a2, z3, a3, rho_hat, delta3,
delta2). Read it beside the notes, then read ``cost_and_grad`` in
``sparse_autoencoder.py``: the same computation for all m examples at once,
where each column x^(i) becomes row i of X (docs/derivation.md shows how one
turns into the other).

It is slow (a Python loop over the examples) and is used as the literal
reference that the tests hold both vectorized versions to, and that
``bench.py`` times. It shares no code with the model except the parameter
names, so that a mistake in one does not hide in the other.

``loop_softmax_cost_and_grad`` does the same for UFLDL's softmax regression
(one example and one class at a time), the reference for ``softmax.py``.
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
