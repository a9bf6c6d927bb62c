"""The tuned cost and gradient: the same J and gradient as
``sparse_autoencoder.cost_and_grad``, computed faster and in less memory.

Read ``sparse_autoencoder.cost_and_grad`` first: it is the lesson, one
equation of the notes per line. This module computes exactly the same
numbers (tests/test_fast_path.py holds the two equal for every penalty and
decoder, in float64 to rtol 1e-12 and in float32 to float32 precision) and
is what training uses (``autoencoder.lbfgs``, ``autoencoder.adam``, the estimator and
the scripts).

What it does differently, and why (docs/speed.md has the measurements):

- **Row blocks.** Each of the five matrix products (X W1^T, a2 W2^T,
  delta3^T a2, delta3 W2, delta2^T X) is one BLAS call over all m rows. The
  elementwise steps between them (sigmoids, residuals, deltas) go block by
  block over the rows, each block about ``BLOCK_BYTES`` of X, so that a
  block of X, delta3 and a3 stays in a core's L2 cache while those steps
  pass over it several times.
- **In place.** One (m, n_visible) array holds z3 without b2, then z3, then
  a3 - X (for the cost), then delta3; a3 lives in a block-sized buffer. One
  (m, n_hidden) array holds X W1^T, then z2, then a2 (and 1 - a2 at the
  end). Extra memory: that one array as large as X, plus a2 and delta2.
- **Sums as sums of block sums.** rho_hat, dJ/db1 and dJ/db2 add whole
  blocks into a block of partial sums, whose rows are summed once at the
  end in float64 (NumPy's broadcast add and column sums go row by row and
  are two to four times slower on rows as narrow as these).
- **The parts of J for free.** The squared error comes from the residual
  that the gradient needs anyway; ``cost_terms_and_grad_unchecked`` returns the
  parts of J with the gradient so that training can print them without
  another forward pass.

Result (``python -m benchmarks.bench``, docs/speed.md): 1.2x to 1.35x the time of the
five products alone at 784 -> 196, against 1.6x to 2.6x for the readable
version; 2x to 3x against 2.5x to 4x at the small shapes (64 -> 25,
100 -> 100), where the elementwise work weighs more.
"""

from __future__ import annotations

import numpy as np

from modern_sae import topk_mask
from sparse_autoencoder import PARAM_NAMES, clip_rho_hat, kl_divergence
from saelab.checks.validation import check_call, check_relu_l1_call, check_spread, check_topk_call

# A block of this many bytes of X keeps that block of X, of delta3 and of a3
# together in a core's L2 cache (2 MiB on the machine this was tuned on). The
# matrix products are not split into blocks: each is one BLAS call over all m
# rows, which keeps BLAS's threads busy and in step (many small
# multithreaded calls stall badly when other programs share the cores).
BLOCK_BYTES = 256 * 1024


def cost_and_grad(params, X, *, penalty="kl", rho=0.01, beta=3.0, lam=1e-4,
                  decoder="sigmoid"):
    """``sparse_autoencoder.cost_and_grad``, tuned: same arguments, checks,
    errors, dtypes and results (to rounding).

    Returns (cost, grads): cost a Python float, grads a dict with the keys,
    shapes and dtype of params.
    """
    params, X, rho, beta, lam = check_call(params, X, penalty, rho, beta, lam, decoder)
    return cost_and_grad_unchecked(params, X, penalty, rho, beta, lam, decoder)


def cost_terms(params, X, *, penalty="kl", rho=0.01, beta=3.0, lam=1e-4,
               decoder="sigmoid") -> dict:
    """``sparse_autoencoder.cost_terms``, tuned: the parts of J, one forward pass, in place."""
    params, X, rho, beta, lam = check_call(params, X, penalty, rho, beta, lam, decoder)
    return cost_terms_unchecked(params, X, penalty, rho, beta, lam, decoder)


def cost_terms_unchecked(params, X, penalty, rho, beta, lam, decoder):
    """cost_terms without any checks of its arguments (training checks them once)."""
    a2 = X @ params["W1"].T                                  # (m, n_hidden)
    a2 += params["b1"]                                       # z2
    sigmoid_into(a2, a2)                                     # a2 = f(z2)
    rho_hat = clip_rho_hat(a2.mean(axis=0))                  # (n_hidden,)
    residual = a2 @ params["W2"].T                           # (m, n_visible)
    residual += params["b2"]                                 # z3
    if decoder == "sigmoid":
        sigmoid_into(residual, residual)                     # a3 = f(z3)
    residual -= X                                            # a3 - X
    return _terms(_sum_of_squares(residual), X.shape[0], params, rho_hat, penalty, rho, beta, lam)


def cost_and_grad_unchecked(params, X, penalty, rho, beta, lam, decoder):
    """cost_and_grad without any checks of its arguments.

    For callers that have already validated them with ``validation.check_call``
    (as ``cost_and_grad`` does): X a 2-D array of the params' dtype, rho,
    beta, lam Python floats. A training loop that calls it many times on the
    same X may check once and call this; anything else should call
    ``cost_and_grad``.
    """
    terms, grads = cost_terms_and_grad_unchecked(params, X, penalty, rho, beta, lam, decoder)
    return terms["cost"], grads


def cost_terms_and_grad_unchecked(params, X, penalty, rho, beta, lam, decoder):
    """Like cost_and_grad_unchecked (no checks), but returns (terms, grads).

    terms is the dict of ``cost_terms`` (the parts of J and mean rho_hat) at
    no extra cost: a training loop can report them without another forward
    pass.
    """
    W1, b1, W2, b2 = (params[name] for name in PARAM_NAMES)
    m, n_visible = X.shape
    n_hidden = W1.shape[0]
    hidden_blocks = _row_blocks(m, n_hidden, X.dtype)       # for (m, n_hidden) arrays
    visible_blocks = _row_blocks(m, n_visible, X.dtype)     # for (m, n_visible) arrays

    # Forward pass to the hidden layer, all rows: rho_hat needs every a2.
    a2 = X @ W1.T                                            # z2 without b1, (m, n_hidden)
    rho_hat = clip_rho_hat(_hidden_activations(a2, b1, hidden_blocks))   # a2 = f(z2) in place; (n_hidden,)

    # Output layer: z3, then a3 - X (for the cost), then delta3, in one array.
    delta3 = a2 @ W2.T                                       # z3 without b2, (m, n_visible)
    squared_error, grad_b2 = _output_deltas(delta3, X, b2, decoder, visible_blocks)
    grad_W2 = delta3.T @ a2                                  # sum_i delta3 a2^T, (n_visible, n_hidden)

    # Hidden layer: delta2 = (delta3 W2 + sparsity_delta) * f'(z2).
    delta2 = delta3 @ W2                                     # (m, n_hidden)
    del delta3
    sparsity_delta = _sparsity_delta(rho_hat, penalty, rho, beta)
    grad_b1 = _hidden_deltas(delta2, a2, sparsity_delta, hidden_blocks)   # a2 is spent
    grad_W1 = delta2.T @ X                                   # sum_i delta2 x^T, (n_hidden, n_visible)

    terms = _terms(squared_error, m, params, rho_hat, penalty, rho, beta, lam)   # the parts of J

    grads = {"W1": grad_W1, "b1": grad_b1, "W2": grad_W2, "b2": grad_b2}
    for name in PARAM_NAMES:
        grads[name] /= m
    grads["W1"] += lam * W1
    grads["W2"] += lam * W2
    return terms, grads


def sigmoid_into(z, out):
    """out = f(z) = 0.5 * tanh(0.5 * z) + 0.5, with no temporary; returns out.

    ``out`` may be ``z`` itself (in place). The same operations in the same
    order as ``sparse_autoencoder.sigmoid``, so the two give the same bits.
    """
    np.multiply(z, 0.5, out=out)          # z / 2
    np.tanh(out, out=out)                 # tanh(z / 2), in [-1, 1]
    out *= 0.5
    out += 0.5                            # (1 + tanh(z / 2)) / 2
    return out


def _row_blocks(m, width, dtype):
    """Slices of rows that cover range(m) in order, each about BLOCK_BYTES of a (m, width) array."""
    rows = max(1, BLOCK_BYTES // (width * np.dtype(dtype).itemsize))
    return [slice(start, min(start + rows, m)) for start in range(0, m, rows)]


def _hidden_activations(a2, b1, blocks):
    """Turn a2, holding X @ W1.T, into a2 = f(z2), z2 = X W1^T + b1, in place.

    Returns rho_hat = (1/m) sum_i a2_i, shape (n_hidden,), a2's dtype.
    """
    b1_rows = _repeat_rows(b1, blocks[0])                    # b1 on every row of a block
    a2_sums = np.zeros_like(b1_rows)                         # sum_i a2_i, one partial sum per block row
    for rows in blocks:
        a = a2[rows]                                         # (size, n_hidden)
        size = a.shape[0]
        a += b1_rows[:size]                                  # z2
        sigmoid_into(a, a)                                   # a2 = f(z2), in place of z2
        a2_sums[:size] += a
    return (_column_sums(a2_sums) / a2.shape[0]).astype(a2.dtype)


def _output_deltas(delta3, X, b2, decoder, blocks):
    """Turn delta3, holding a2 @ W2.T, into delta3 = (a3 - X) * f'(z3), in place.

    z3 = a2 W2^T + b2, a3 = f(z3) (linear decoder: a3 = z3 and f'(z3) = 1).
    Returns (sum_i ||a3_i - x_i||^2 as a Python float, sum_i delta3_i of
    shape (n_visible,)). The residual a3 - X is formed in delta3 itself, so
    the cost's reconstruction term comes from the arrays of the gradient.
    """
    b2_rows = _repeat_rows(b2, blocks[0])                    # b2 on every row of a block
    a3_buffer = np.empty_like(b2_rows)
    delta3_sums = np.zeros_like(b2_rows)                     # sum_i delta3_i, per block row
    squared_error = 0.0
    for rows in blocks:
        x, d = X[rows], delta3[rows]                         # (size, n_visible) each
        size = d.shape[0]
        d += b2_rows[:size]                                  # z3
        if decoder == "sigmoid":
            a3 = sigmoid_into(d, a3_buffer[:size])           # a3 = f(z3)
            np.subtract(a3, x, out=d)                        # a3 - x
        else:
            d -= x                                           # a3 - x, with a3 = z3
        squared_error += _sum_of_squares(d)
        if decoder == "sigmoid":
            d *= a3
            d *= np.subtract(1, a3, out=a3)                  # delta3 = (a3 - x) * f'(z3), f' = a3 (1 - a3)
        delta3_sums[:size] += d
    return squared_error, _column_sums(delta3_sums).astype(X.dtype)


def _hidden_deltas(delta2, a2, sparsity_delta, blocks):
    """Turn delta2, holding delta3 W2, into (delta3 W2 + sparsity_delta) * f'(z2), in place.

    f'(z2) = a2 (1 - a2); a2 is overwritten (with 1 - a2) on the way.
    sparsity_delta: (n_hidden,) for KL, the float beta for L1, None for no
    penalty. Returns sum_i delta2_i, shape (n_hidden,).
    """
    n_hidden = delta2.shape[1]
    if sparsity_delta is not None:
        sparsity_delta = np.broadcast_to(sparsity_delta, (n_hidden,)).astype(delta2.dtype)
        sparsity_rows = _repeat_rows(sparsity_delta, blocks[0])
    delta2_sums = np.zeros((blocks[0].stop, n_hidden), delta2.dtype)   # sum_i delta2_i, per block row
    for rows in blocks:
        d, a = delta2[rows], a2[rows]                        # (size, n_hidden) each
        size = d.shape[0]
        if sparsity_delta is not None:
            d += sparsity_rows[:size]
        d *= a
        d *= np.subtract(1, a, out=a)                        # times f'(z2) = a2 (1 - a2)
        delta2_sums[:size] += d
    return _column_sums(delta2_sums).astype(delta2.dtype)


def _repeat_rows(vector, block):
    """``vector`` (n,) repeated on every row of a block of rows: (rows, n).

    Adding a per-unit vector such as b2 to a block this way is a plain
    elementwise add; NumPy's broadcast add goes row by row and is two to
    four times slower for rows as narrow as these. Likewise the column sums
    over i (rho_hat, dJ/db) add whole blocks into a block of partial sums
    and sum its rows once at the end.
    """
    return np.tile(vector, (block.stop - block.start, 1))


def _column_sums(partial_sums):
    """Sum the rows of a block of partial sums, accumulating in float64.

    The block holds one partial sum per row slot, each over only m / rows
    examples; adding its few thousand rows one after another in float32
    would lose about as many digits as the rest of the computation. float64
    here costs nothing (one block, not an array as large as X) and brings a
    float32 dJ/db1, dJ/db2 and rho_hat within a few float32 epsilons of the
    float64 values.
    """
    return partial_sums.sum(axis=0, dtype=np.float64)


def _sum_of_squares(A):
    """The sum of A's squared entries, as a Python float.

    einsum, not a BLAS dot: OpenBLAS splits a long dot product over its
    threads, and that hand-off can stall for milliseconds when the cores
    are busy with other work.
    """
    flat = A.ravel()
    return float(np.einsum("i,i->", flat, flat))


def _weight_decay(params, lam):
    """(lam/2) (||W1||_F^2 + ||W2||_F^2), a Python float; the biases are not decayed."""
    return 0.5 * lam * (_sum_of_squares(params["W1"]) + _sum_of_squares(params["W2"]))


def _terms(squared_error, m, params, rho_hat, penalty, rho, beta, lam):
    """The dict that cost_terms returns, from sum_i ||a3_i - x_i||^2 and rho_hat."""
    terms = {
        "reconstruction": (0.5 / m) * squared_error,
        "weight_decay": _weight_decay(params, lam),
        "sparsity": _sparsity(rho_hat, penalty, rho, beta),
    }
    terms["cost"] = sum(terms.values())
    terms["mean_rho_hat"] = float(rho_hat.mean())
    return terms


def _sparsity(rho_hat, penalty, rho, beta):
    """The sparsity term of J, from rho_hat (n_hidden,), already clipped."""
    if penalty == "kl":
        return beta * float(kl_divergence(rho, rho_hat).sum())
    if penalty == "l1":
        # beta (1/m) sum_i sum_j |a2_ij| = beta * sum_j rho_hat_j (a2 > 0).
        return beta * float(rho_hat.sum())
    return 0.0


def _sparsity_delta(rho_hat, penalty, rho, beta):
    """d(sparsity term)/d a2_ij times m, the same for every row: (n_hidden,)."""
    if penalty == "kl":
        return beta * (-rho / rho_hat + (1 - rho) / (1 - rho_hat))
    if penalty == "l1":
        return beta
    return None


# ---------------------------------------------------------------------------
# Today's SAEs: ReLU + L1 and TopK (modern_sae.py is the readable version)
# ---------------------------------------------------------------------------
#
# The same numbers as ``modern_sae.relu_l1_cost_and_grad`` and
# ``modern_sae.topk_cost_and_grad`` (tests/test_fast_path.py holds them
# equal), with exactly the five products of one evaluation:
#
# - TopK's x_bar = X - b2 is never formed: z2 = X W1^T + (b1 - W1 b2), and
#   dJ/dW1 = (delta2^T X - (sum_i delta2_i) b2^T) / m; dJ/db2 takes
#   (sum_i delta2_i) W1, a vector times a matrix, instead of the readable
#   version's (m, n_hidden) x (n_hidden, n_visible) product delta2 W1.
#   (ReLU + L1 has no pre-encoder bias: z2 = X W1^T + b1, dJ/db2 = sum_i delta3_i / m.)
# - In place: one (m, n_hidden) array holds z2, then a2; one (m, n_visible)
#   array holds x_hat, then delta3 = x_hat - X.
# - TopK's selection: each row's k-th largest z2 by ``np.partition``
#   (O(m n_hidden)), then z2 >= it; only rows with ties at the k-th place
#   go through ``modern_sae.topk_mask`` (its tie rule: lower indices first).
# - AuxK works on the dead latents' columns only: its products are
#   (m, n_dead) by (n_dead, n_visible), small while few latents are dead.
#
# The unchecked ``relu_l1_unchecked`` and ``topk_unchecked`` also return which latents fired
# (a2 > 0 on some row), for the dead-latent tracker of saelab/training/modern.py.


def relu_l1_cost_and_grad(params, X, *, l1=1.0, lam=0.0):
    """``modern_sae.relu_l1_cost_and_grad``, tuned: same arguments, checks and results (to rounding)."""
    params, X, l1, lam = check_relu_l1_call(params, X, l1, lam)
    terms, grads, _ = relu_l1_unchecked(params, X, l1, lam)
    return terms["cost"], grads


def topk_cost_and_grad(params, X, *, k, aux_k=None, alpha=1 / 32, dead=None, lam=0.0,
                       aux_scale=None):
    """``modern_sae.topk_cost_and_grad``, tuned (without the frozen masks of the gradient
    checker): same arguments, checks and results (to rounding)."""
    params, X, k, aux_k, alpha, dead, lam, aux_scale, *_, spread_floor = check_topk_call(
        params, X, k, aux_k, alpha, dead, lam, aux_scale=aux_scale)
    terms, grads, _ = topk_unchecked(params, X, k, aux_k, alpha, dead, lam, spread_floor,
                                     aux_scale)
    return terms["cost"], grads


def relu_l1_unchecked(params, X, l1, lam):
    """(terms, grads, fired) of ReLU + L1, no checks; terms as ``modern_sae.relu_l1_cost_terms``."""
    W1, W2 = params["W1"], params["W2"]
    m = X.shape[0]
    a2 = X @ W1.T                                            # (m, n_hidden)
    a2 += params["b1"]                                       # z2: no pre-encoder bias
    np.maximum(a2, 0, out=a2)                                # a2 = ReLU(z2), in place
    norms = np.sqrt(np.einsum("ij,ij->j", W2, W2))           # ||W2[:, j]||, (n_hidden,)
    a2_sums = a2.sum(axis=0, dtype=np.float64)               # sum_i a2_i, (n_hidden,)
    delta3, squared_error = _residual(params, X, a2)         # x_hat - X, (m, n_visible)
    delta2 = delta3 @ W2                                     # (m, n_hidden)
    delta2 += (l1 * norms).astype(delta2.dtype)
    active = a2 > 0                                          # ReLU' = 1{z2 > 0}
    delta2 *= active
    grads = _linear_decoder_grads(params, X, a2, delta3, delta2, centered=False)
    grads["W2"] += (l1 / m) * (W2 / np.where(norms > 0, norms, 1)) * a2_sums.astype(W2.dtype)
    terms = {"reconstruction": 0.5 * squared_error / m,
             "sparsity": l1 * float(a2_sums @ norms) / m,
             "weight_decay": _weight_decay(params, lam)}
    terms["cost"] = sum(terms.values())
    _add_weight_decay(grads, params, lam)
    return terms, grads, active.any(axis=0)


def topk_unchecked(params, X, k, aux_k, alpha, dead, lam, spread_floor=0.0, aux_scale=None):
    """(terms, grads, fired) of TopK (+ AuxK), no checks; terms as ``modern_sae.topk_cost_terms``.
    spread_floor: from ``validation.check_topk_call`` (0.0 in training: see ``check_spread``).
    aux_scale: c of AuxK's weight alpha c (None: from X, as ``modern_sae.mean_prediction_scale``)."""
    W2 = params["W2"]
    m = X.shape[0]
    a2 = _preactivations(params, X)                          # z2, (m, n_hidden)
    use_aux = aux_k is not None and dead is not None and dead.any()
    if use_aux:
        dead_columns = np.flatnonzero(dead)
        z2_dead = a2[:, dead_columns]                        # a copy: a2 is overwritten below
    selected = _topk_select(a2, k)                           # (m, n_hidden) bool, k per row
    np.maximum(a2, 0, out=a2)
    a2 *= selected                                           # a2 = ReLU of the top k
    delta3, squared_error = _residual(params, X, a2)         # x_hat - X, (m, n_visible)
    delta2 = delta3 @ W2                                     # (m, n_hidden)
    active = a2 > 0                                          # selected and z2 > 0
    delta2 *= active
    aux = 0.0
    aux_grad_W2 = None
    if use_aux:
        aux_selected = _topk_select(z2_dead, min(aux_k, dead_columns.size))
        a_aux = np.maximum(z2_dead, 0) * aux_selected        # (m, n_dead)
        W2_dead = W2[:, dead_columns]                        # (n_visible, n_dead)
        if aux_scale is None:                                # c = (1/2m) sum_i ||x_i - x_mean||^2
            aux_scale = 0.5 * _sum_of_squares(X - X.mean(axis=0, dtype=np.float64)) / m
        weight = alpha * aux_scale                           # AuxK's weight in J
        e = -delta3                                          # X - x_hat, held constant
        spread = np.float64(_sum_of_squares(e - e.mean(axis=0)))   # (a diverged run's 0: J -> inf)
        check_spread(spread, weight, spread_floor)
        diff = a_aux @ W2_dead.T                             # e_hat, (m, n_visible)
        diff += delta3                                       # e_hat - e
        aux = weight * _sum_of_squares(diff) / spread
        diff *= 2 * weight * m / spread                      # aux_delta3
        aux_delta2 = diff @ W2_dead                          # (m, n_dead)
        aux_delta2 *= a_aux > 0
        delta2[:, dead_columns] += aux_delta2
        aux_grad_W2 = diff.T @ a_aux                         # (n_visible, n_dead)
    grads = _linear_decoder_grads(params, X, a2, delta3, delta2)
    if aux_grad_W2 is not None:
        grads["W2"][:, dead_columns] += aux_grad_W2 / m
    terms = {"reconstruction": 0.5 * squared_error / m, "sparsity": 0.0, "auxk": float(aux),
             "weight_decay": _weight_decay(params, lam)}
    terms["cost"] = sum(terms.values())
    _add_weight_decay(grads, params, lam)
    return terms, grads, active.any(axis=0)


def _preactivations(params, X):
    """z2 = X W1^T + (b1 - W1 b2) = (X - b2) W1^T + b1, without forming X - b2: (m, n_hidden)."""
    W1 = params["W1"]
    z2 = X @ W1.T
    z2 += params["b1"] - W1 @ params["b2"]
    return z2


def _residual(params, X, a2):
    """(delta3 = x_hat - X, sum of its squares): x_hat = a2 W2^T + b2, in one array."""
    delta3 = a2 @ params["W2"].T                             # (m, n_visible)
    delta3 += params["b2"]
    delta3 -= X
    return delta3, _sum_of_squares(delta3)


def _linear_decoder_grads(params, X, a2, delta3, delta2, centered=True):
    """The gradient of both models, from their deltas (delta = m dJ/dz), all divided by m.

    centered (TopK): b2 enters twice, in x_hat (+ sum_i delta3_i) and in
    x_bar = x - b2 (- (sum_i delta2_i) W1); dJ/dW1 = sum_i delta2_i (x_i - b2)^T.
    Not centered (ReLU + L1): dJ/db2 = sum_i delta3_i, dJ/dW1 = sum_i delta2_i x_i^T.
    """
    m = X.shape[0]
    delta2_sums = delta2.sum(axis=0, dtype=np.float64)       # (n_hidden,)
    W1, b2 = params["W1"], params["b2"]
    grad_W1 = delta2.T @ X                                   # (n_hidden, n_visible)
    grad_b2 = delta3.sum(axis=0, dtype=np.float64)
    if centered:
        grad_W1 -= np.outer(delta2_sums, b2).astype(grad_W1.dtype)
        grad_b2 -= delta2_sums @ W1
    grads = {"W1": grad_W1, "b1": delta2_sums.astype(W1.dtype), "W2": delta3.T @ a2,
             "b2": grad_b2.astype(W1.dtype)}
    for name in PARAM_NAMES:
        grads[name] /= m
    return grads


def _add_weight_decay(grads, params, lam):
    if lam:
        grads["W1"] += lam * params["W1"]
        grads["W2"] += lam * params["W2"]


def _topk_select(z2, k):
    """``modern_sae.topk_mask(z2, k)``: z2 >= each row's k-th largest, ties fixed row by row."""
    n_hidden = z2.shape[1]
    kth_largest = np.partition(z2, n_hidden - k, axis=1)[:, n_hidden - k:n_hidden - k + 1]
    selected = z2 >= kth_largest                             # (m, n_hidden)
    tied_rows = np.flatnonzero(np.count_nonzero(selected, axis=1) != k)
    if tied_rows.size:                                       # rare: equal values at the k-th place
        selected[tied_rows] = topk_mask(z2[tied_rows], k)
    return selected
