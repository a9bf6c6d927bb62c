"""The tuned cost and gradient: the same J and gradient as
``sparse_autoencoder.cost_and_grad``, computed faster and in less memory.

Read ``sparse_autoencoder.cost_and_grad`` first: it is the lesson, one
equation of the notes per line. This module computes exactly the same
numbers (tests/test_fast_path.py holds the two equal for every penalty and
decoder, in float64 to rtol 1e-12 and in float32 to float32 precision) and
is what training uses (``train.lbfgs``, ``train.adam``, the estimator and
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
  that the gradient needs anyway; ``_cost_terms_and_grad`` returns the
  parts of J with the gradient so that training can print them without
  another forward pass.

Result: about 1.2-1.5x the time of the five products alone, against about
1.6x and more for the readable version (``python bench.py``).
"""

from __future__ import annotations

import numpy as np

from sparse_autoencoder import PARAM_NAMES, clip_rho_hat, kl_divergence
from validation import check_call

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
    return _cost_and_grad(params, X, penalty, rho, beta, lam, decoder)


def cost_terms(params, X, *, penalty="kl", rho=0.01, beta=3.0, lam=1e-4,
               decoder="sigmoid") -> dict:
    """``sparse_autoencoder.cost_terms``, tuned: the parts of J, one forward pass, in place."""
    params, X, rho, beta, lam = check_call(params, X, penalty, rho, beta, lam, decoder)
    return _cost_terms(params, X, penalty, rho, beta, lam, decoder)


def _cost_terms(params, X, penalty, rho, beta, lam, decoder):
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


def _cost_and_grad(params, X, penalty, rho, beta, lam, decoder):
    """cost_and_grad without any checks of its arguments.

    For callers that have already validated them with ``validation.check_call``
    (as ``cost_and_grad`` does): X a 2-D array of the params' dtype, rho,
    beta, lam Python floats. A training loop that calls it many times on the
    same X may check once and call this; anything else should call
    ``cost_and_grad``.
    """
    terms, grads = _cost_terms_and_grad(params, X, penalty, rho, beta, lam, decoder)
    return terms["cost"], grads


def _cost_terms_and_grad(params, X, penalty, rho, beta, lam, decoder):
    """Like _cost_and_grad (no checks), but returns (terms, grads).

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


def _terms(squared_error, m, params, rho_hat, penalty, rho, beta, lam):
    """The dict that cost_terms returns, from sum_i ||a3_i - x_i||^2 and rho_hat."""
    terms = {
        "reconstruction": (0.5 / m) * squared_error,
        "weight_decay": 0.5 * lam * (_sum_of_squares(params["W1"]) + _sum_of_squares(params["W2"])),
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
