"""The exercise: write the sparse autoencoder's cost and gradient yourself.

UFLDL's ``sparseAutoencoderCost``, in this project's layout. Fill in the
blanks of ``cost_and_grad`` below, then check them:

    python gradcheck.py --cost exercise.py:cost_and_grad

Each blank is a line ``raise NotImplementedError("name (shape)")``. Replace
it with the assignment ``name = ...`` that the comment above it describes:
the notes' equation (for one example, a column) and the shape of the result
(for all m examples, rows). Use the names already there (W1, b1, W2, b2, X,
m, rho, beta, lam, z2, a2, ...) and three functions, imported for you:
``sigmoid(z)`` (elementwise f), ``kl_divergence(rho, rho_hat)`` (KL(rho ||
rho_hat_j) for each unit j, rho first) and ``clip_rho_hat(rho_hat)``. The
arguments are checked for you at the top
(``saelab.checks.validation.check_call``), so you only write the math.

Layout. The rows of X are the examples: X is (m, n_visible), and each of the
notes' columns (z2, a2, z3, a3, delta3, delta2 of one example) is a row of
an (m, ...) matrix here. Sums over the examples i become sums over rows.
The weights keep the notes' shapes: W1 (n_hidden, n_visible), b1
(n_hidden,), W2 (n_visible, n_hidden), b2 (n_visible,). Two facts are all
the layout needs: a matrix product is a sum over its inner index,
(A @ B)[r, c] = sum_s A[r, s] B[s, c]; and for two arrays whose rows are the
same m examples, A (m, p) and B (m, q), the (p, q) array A.T @ B holds the
sum over the examples of the products of their entries. Work out each blank
with the shapes at the end of its comment; docs/derivation.md, "The names
and the one rule", states the two facts. Everything past that
section of derivation.md, ``sparse_autoencoder.cost_and_grad``, its module
docstring and the README's equation table are the solution: read them
afterwards.

What the check tells you. It runs six stages, and each prints one line:
``ok``, ``FAIL`` with the relative difference (your gradient disagrees with
the numerical one; the columns W1 .. b2 show in which block), or
``FAILED: NotImplementedError: <name> ... (exercise.py:<line>)``, the first
blank that stage reached. Under a row, a ``J:`` line says that your J is
not the notes' J at that stage, by what ratio, and which classic slip
explains it (a gradient can match a wrong cost exactly, so the check
compares J too). A stage passes once every blank it runs is written, and
written right. Not every stage runs every blank:

- ``a3`` and ``delta3`` have a sigmoid and a linear branch (``decoder``);
  a stage runs one of them.
- ``sparsity`` and ``sparsity_delta`` have a KL and an L1 branch
  (``penalty``); with ``penalty="none"`` a stage runs neither, and the
  sparsity term is 0.
- ``weight_decay`` is computed only when lam > 0; with lam = 0 it is 0 (a
  stage with lam = 0 does not need it). The gradients' ``+ lambda W`` parts
  are in the gradient blanks: with lam = 0 they vanish whatever you write,
  so the "+ weight decay" stage is the one that checks them.

So the stages pass in UFLDL's order when you write: the forward pass
(z2 .. rho_hat), reconstruction, cost, delta3, delta2 and the four
gradients ("reconstruction only" and "linear decoder" pass); then
weight_decay ("+ weight decay"); then the KL blanks ("+ KL sparsity",
"everything together") and the L1 blanks ("L1 sparsity").
"""

from __future__ import annotations

import numpy as np

from sparse_autoencoder import clip_rho_hat, kl_divergence, sigmoid  # noqa: F401 (yours to use)
from saelab.checks.validation import check_call


def cost_and_grad(params, X, *, penalty="kl", rho=0.01, beta=3.0, lam=1e-4,
                  decoder="sigmoid"):
    """The notes' cost J and its gradient, for all m rows of X at once: yours to write.

    params:  W1 (n_hidden, n_visible), b1 (n_hidden,), W2 (n_visible, n_hidden),
             b2 (n_visible,); all float32 or all float64.
    X:       (m, n_visible), one example per row; in [0, 1] for the sigmoid decoder.
    penalty: "kl" (the notes: beta sum_j KL(rho || rho_hat_j)), "l1"
             (beta (1/m) sum_i sum_j |a2_ij|) or "none".
    rho:     target activation, 0 < rho < 1.   beta: sparsity weight >= 0.
    lam:     weight decay lambda >= 0.
    decoder: "sigmoid" (the notes, a3 = f(z3)) or "linear" (a3 = z3).

    Returns (cost, grads): cost a float, grads a dict with the keys W1, b1,
    W2, b2 and the shapes of params. The same signature and result as
    ``sparse_autoencoder.cost_and_grad``. f is the sigmoid; f'(z) = f(z) (1 - f(z)).
    """
    params, X, rho, beta, lam = check_call(params, X, penalty, rho, beta, lam, decoder)
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    m = X.shape[0]

    # ---- Forward pass --------------------------------------------------------------

    # z2 = W1 x + b1, for every example x (a row of X)                  -> (m, n_hidden)
    raise NotImplementedError("z2 (m, n_hidden)")
    # a2 = f(z2)                                                          -> (m, n_hidden)
    raise NotImplementedError("a2 (m, n_hidden)")
    # z3 = W2 a2 + b2                                                     -> (m, n_visible)
    raise NotImplementedError("z3 (m, n_visible)")
    if decoder == "sigmoid":
        # a3 = f(z3)                                                      -> (m, n_visible)
        raise NotImplementedError("a3 [sigmoid] (m, n_visible)")
    else:
        # linear decoder: a3 = z3                                         -> (m, n_visible)
        raise NotImplementedError("a3 [linear] (m, n_visible)")
    # rho_hat_j = (1/m) sum_i a2_j(x_i), then clip_rho_hat(...) so that
    # KL stays finite when a unit is saturated                            -> (n_hidden,)
    raise NotImplementedError("rho_hat (n_hidden,)")

    # ---- The cost J = reconstruction + weight decay + sparsity -----------------------

    # reconstruction = (1/m) sum_i 1/2 ||a3(x_i) - x_i||^2                -> a float
    raise NotImplementedError("reconstruction (a float)")
    if lam == 0:
        weight_decay = 0.0                           # nothing to compute (see the docstring)
    else:
        # weight_decay = (lambda/2) (||W1||_F^2 + ||W2||_F^2), biases excluded   -> a float
        raise NotImplementedError("weight_decay (a float)")
    if penalty == "kl":
        # sparsity = beta sum_j KL(rho || rho_hat_j),
        # KL(rho || r) = rho log(rho / r) + (1 - rho) log((1 - rho) / (1 - r))   -> a float
        raise NotImplementedError("sparsity [KL] (a float)")
    elif penalty == "l1":
        # sparsity = beta (1/m) sum_i sum_j |a2_ij|                       -> a float
        raise NotImplementedError("sparsity [L1] (a float)")
    else:
        sparsity = 0.0                               # penalty="none"
    # J = reconstruction + weight_decay + sparsity                        -> a float
    raise NotImplementedError("cost (a float)")

    # ---- Backward pass: the error terms ----------------------------------------------

    if decoder == "sigmoid":
        # delta3 = -(x - a3) .* f'(z3), with f'(z3) = a3 .* (1 - a3)      -> (m, n_visible)
        raise NotImplementedError("delta3 [sigmoid] (m, n_visible)")
    else:
        # linear decoder: delta3 = -(x - a3)                              -> (m, n_visible)
        raise NotImplementedError("delta3 [linear] (m, n_visible)")
    if penalty == "kl":
        # the sparsity part of delta2's bracket (delta2 is m times dJ/dz2, so
        # the penalty's 1/m does not appear here; docs/derivation.md):
        # sparsity_delta = beta (-rho / rho_hat + (1 - rho) / (1 - rho_hat))   -> (n_hidden,)
        raise NotImplementedError("sparsity_delta [KL] (n_hidden,)")
    elif penalty == "l1":
        # the L1 penalty's part: beta for every unit (d|a|/da = 1, as a2 > 0;
        # no 1/m, as delta2 is m times dJ/dz2: docs/derivation.md)        -> (n_hidden,)
        raise NotImplementedError("sparsity_delta [L1] (n_hidden,)")
    else:
        sparsity_delta = np.zeros_like(rho_hat)      # penalty="none": nothing to add
    # delta2 = (W2^T delta3 + sparsity_delta) .* f'(z2), f'(z2) = a2 .* (1 - a2)   -> (m, n_hidden)
    raise NotImplementedError("delta2 (m, n_hidden)")

    # ---- The gradient: sums over the examples, divided by m, plus weight decay -------

    # dJ/dW1 = (1/m) sum_i delta2 x^T + lambda W1                        -> (n_hidden, n_visible)
    raise NotImplementedError("grad_W1 (n_hidden, n_visible)")
    # dJ/db1 = (1/m) sum_i delta2                                         -> (n_hidden,)
    raise NotImplementedError("grad_b1 (n_hidden,)")
    # dJ/dW2 = (1/m) sum_i delta3 a2^T + lambda W2                       -> (n_visible, n_hidden)
    raise NotImplementedError("grad_W2 (n_visible, n_hidden)")
    # dJ/db2 = (1/m) sum_i delta3                                         -> (n_visible,)
    raise NotImplementedError("grad_b2 (n_visible,)")

    return float(cost), {"W1": grad_W1, "b1": grad_b1, "W2": grad_W2, "b2": grad_b2}
