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
``benchmarks/bench.py`` times. It shares no code with the model except the parameter
names, so that a mistake in one does not hide in the other.

``loop_softmax_cost_and_grad`` does the same for UFLDL's softmax regression
(one example and one class at a time), the reference for ``saelab/softmax.py``.
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


# ---------------------------------------------------------------------------
# Today's models (modern_sae.py), one example at a time
# ---------------------------------------------------------------------------


def _column_norm(W, j):
    """||W[:, j]||, as a sum of squares written out."""
    return math.sqrt(sum(float(W[r, j]) ** 2 for r in range(W.shape[0])))


def _largest(values, count):
    """Indices of the ``count`` largest of ``values`` (a list); ties go to the lower index."""
    order = sorted(range(len(values)), key=lambda j: (-values[j], j))
    return set(order[:count])


def loop_relu_l1_cost_and_grad(params, X, *, l1=1.0, lam=0.0):
    """ReLU + L1's J and gradient, one example (a column) at a time.

    Same arguments and return value as ``modern_sae.relu_l1_cost_and_grad``.
    For each example x (a column): x_bar = x - b2, z2 = W1 x_bar + b1,
    a2 = max(z2, 0), x_hat = W2 a2 + b2;

        J = (1/m) sum_i 1/2 ||x_hat - x||^2 + l1 (1/m) sum_i sum_j a2_j ||W2[:, j]||
            + (lam/2) (sum W1^2 + sum W2^2)
        delta3 = x_hat - x
        delta2 = (W2^T delta3 + l1 ||W2[:, j]||_j) .* 1{z2 > 0}
        dJ/dW1 = (1/m) sum_i delta2 x_bar^T + lam W1,     dJ/db1 = (1/m) sum_i delta2
        dJ/dW2[:, j] = (1/m) sum_i (delta3 a2_j + l1 a2_j W2[:, j] / ||W2[:, j]||) + lam W2[:, j]
        dJ/db2 = (1/m) sum_i (delta3 - W1^T delta2)       (b2 is in x_hat and in x_bar)
    """
    W1, b1, W2, b2 = (np.asarray(params[k], dtype=np.float64) for k in ("W1", "b1", "W2", "b2"))
    b1 = b1.reshape(-1, 1)
    b2 = b2.reshape(-1, 1)
    n_hidden = W1.shape[0]
    m = X.shape[0]
    norms = np.array([[_column_norm(W2, j)] for j in range(n_hidden)])     # (n_hidden, 1)

    dW1, db1 = np.zeros_like(W1), np.zeros_like(b1)
    dW2, db2 = np.zeros_like(W2), np.zeros_like(b2)
    squared_error, penalty = 0.0, 0.0
    for i in range(m):
        x = X[i].reshape(-1, 1).astype(np.float64)
        x_bar = x - b2
        z2 = W1 @ x_bar + b1
        a2 = np.maximum(z2, 0.0)
        x_hat = W2 @ a2 + b2
        squared_error += 0.5 * float(np.sum((x_hat - x) ** 2))
        for j in range(n_hidden):
            penalty += float(a2[j, 0]) * float(norms[j, 0])

        delta3 = x_hat - x
        delta2 = (W2.T @ delta3 + l1 * norms) * (z2 > 0)
        dW1 += delta2 @ x_bar.T
        db1 += delta2
        dW2 += delta3 @ a2.T
        for j in range(n_hidden):
            if norms[j, 0] > 0:
                dW2[:, j] += l1 * a2[j, 0] * W2[:, j] / norms[j, 0]
        db2 += delta3 - W1.T @ delta2

    cost = squared_error / m + l1 * penalty / m + (lam / 2) * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    grads = {
        "W1": dW1 / m + lam * W1,
        "b1": (db1 / m).ravel(),
        "W2": dW2 / m + lam * W2,
        "b2": (db2 / m).ravel(),
    }
    return float(cost), grads


def loop_topk_cost_and_grad(params, X, *, k, aux_k=None, alpha=1 / 32, dead=None, lam=0.0):
    """TopK's J and gradient, AuxK included, one example (a column) at a time.

    Same arguments and return value as ``modern_sae.topk_cost_and_grad``
    (without the frozen masks). For each example x: x_bar = x - b2,
    z2 = W1 x_bar + b1; S = the k largest z2_j (ties: lower j first);
    a2_j = max(z2_j, 0) for j in S, else 0; x_hat = W2 a2 + b2.
    AuxK, with D the dead latents: e = x - x_hat (a constant);
    S_aux = the min(aux_k, |D|) largest z2_j over j in D; a_aux_j = max(z2_j, 0)
    for j in S_aux, else 0; e_hat = W2 a_aux;

        L_aux = sum_i ||e - e_hat||^2 / sum_i ||e - e_mean||^2,  e_mean = (1/m) sum_i e
        J = (1/m) sum_i 1/2 ||x_hat - x||^2 + alpha L_aux + (lam/2) (sum W1^2 + sum W2^2)

    A first pass gets every e (the normalization needs all of them, as rho_hat
    does in the notes); the second does the rest, with
    delta3 = x_hat - x, delta3_aux = (2 alpha m / sum_i ||e - e_mean||^2) (e_hat - e),
    delta2_j = (W2^T delta3)_j 1{j in S, z2_j > 0} + (W2^T delta3_aux)_j 1{j in S_aux, z2_j > 0}.
    """
    W1, b1, W2, b2 = (np.asarray(params[k_], dtype=np.float64) for k_ in ("W1", "b1", "W2", "b2"))
    b1 = b1.reshape(-1, 1)
    b2 = b2.reshape(-1, 1)
    n_hidden = W1.shape[0]
    m = X.shape[0]
    dead_latents = [] if dead is None else [j for j in range(n_hidden) if dead[j]]
    use_aux = aux_k is not None and len(dead_latents) > 0

    def forward(x):
        x_bar = x - b2
        z2 = W1 @ x_bar + b1
        values = [float(z2[j, 0]) for j in range(n_hidden)]
        S = _largest(values, k)
        a2 = np.array([[max(values[j], 0.0) if j in S else 0.0] for j in range(n_hidden)])
        x_hat = W2 @ a2 + b2
        return x_bar, z2, values, S, a2, x_hat

    # First pass: the residuals e and their mean, for AuxK's normalization.
    residuals = []
    for i in range(m):
        x = X[i].reshape(-1, 1).astype(np.float64)
        residuals.append(x - forward(x)[5])
    e_mean = sum(residuals) / m
    spread = sum(float(np.sum((e - e_mean) ** 2)) for e in residuals)

    # Second pass: cost and backpropagation.
    dW1, db1 = np.zeros_like(W1), np.zeros_like(b1)
    dW2, db2 = np.zeros_like(W2), np.zeros_like(b2)
    squared_error, aux_error = 0.0, 0.0
    for i in range(m):
        x = X[i].reshape(-1, 1).astype(np.float64)
        x_bar, z2, values, S, a2, x_hat = forward(x)
        squared_error += 0.5 * float(np.sum((x_hat - x) ** 2))
        delta3 = x_hat - x
        back = W2.T @ delta3
        delta2 = np.array([[back[j, 0] if (j in S and values[j] > 0) else 0.0]
                           for j in range(n_hidden)])
        dW2 += delta3 @ a2.T
        if use_aux:
            e = residuals[i]
            S_aux = _largest([values[j] for j in dead_latents], min(aux_k, len(dead_latents)))
            S_aux = {dead_latents[position] for position in S_aux}
            a_aux = np.array([[max(values[j], 0.0) if j in S_aux else 0.0]
                              for j in range(n_hidden)])
            e_hat = W2 @ a_aux
            aux_error += float(np.sum((e - e_hat) ** 2))
            delta3_aux = (2 * alpha * m / spread) * (e_hat - e)
            back_aux = W2.T @ delta3_aux
            delta2 = delta2 + np.array([[back_aux[j, 0] if (j in S_aux and values[j] > 0) else 0.0]
                                        for j in range(n_hidden)])
            dW2 += delta3_aux @ a_aux.T
        dW1 += delta2 @ x_bar.T
        db1 += delta2
        db2 += delta3 - W1.T @ delta2

    cost = squared_error / m + (lam / 2) * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    if use_aux:
        cost += alpha * aux_error / spread
    grads = {
        "W1": dW1 / m + lam * W1,
        "b1": (db1 / m).ravel(),
        "W2": dW2 / m + lam * W2,
        "b2": (db2 / m).ravel(),
    }
    return float(cost), grads
