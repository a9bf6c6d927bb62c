"""The sparse autoencoder of Andrew Ng's CS294A notes, in plain NumPy.

Layout
------
The notes put one example per column: x is a column of s1 = n_visible values
and z2 = W1 x + b1. Here the rows of ``X`` are examples, so ``X`` has shape
``(m, n_visible)`` and every per-example column of the notes becomes a row of
a matrix:

    notes (example i, a column)      this code (all m examples, rows)
    z2 = W1 x + b1                   z2 = X @ W1.T + b1          # (m, n_hidden)
    z3 = W2 a2 + b2                  z3 = a2 @ W2.T + b2         # (m, n_visible)
    W2^T delta3                      delta3 @ W2                 # (m, n_hidden)
    sum_i delta3 a2^T                delta3.T @ a2               # (n_visible, n_hidden)
    sum_i delta2 x^T                 delta2.T @ X                # (n_hidden, n_visible)

The weights keep the notes' shapes: ``W1`` is ``(n_hidden, n_visible)`` and
``W2`` is ``(n_visible, n_hidden)`` (also the shapes of PyTorch's
``nn.Linear(n_visible, n_hidden).weight`` and ``nn.Linear(n_hidden,
n_visible).weight``). ``b1`` is ``(n_hidden,)`` and ``b2`` is ``(n_visible,)``.

The cost (the notes' J)
-----------------------
    J = (1/m) sum_i 1/2 ||a3_i - x_i||^2                  reconstruction
        + (lam/2) (||W1||_F^2 + ||W2||_F^2)               weight decay
        + sparsity penalty

    penalty="kl":  beta * sum_j KL(rho || rho_hat_j),
                   rho_hat_j = (1/m) sum_i a2_ij,
                   KL(rho || r) = rho log(rho/r) + (1-rho) log((1-rho)/(1-r))
    penalty="l1":  beta * (1/m) sum_i sum_j |a2_ij|   (= mean row sum of a2,
                   since a sigmoid's a2 is positive)
    penalty="none": 0

``lam`` is the notes' lambda (``lambda`` is a Python keyword). ``decoder``
is ``"sigmoid"`` (a3 = f(z3), the notes) or ``"linear"`` (a3 = z3, UFLDL's
linear decoder).

Dtype: the dtype of ``params`` (float32 or float64) is the dtype of the whole
computation; ``X`` of another dtype is converted once, on entry.

Nothing here imports scipy or matplotlib.
"""

from __future__ import annotations

import numbers

import numpy as np

PARAM_NAMES = ("W1", "b1", "W2", "b2")
PENALTIES = ("kl", "l1", "none")
DECODERS = ("sigmoid", "linear")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


# ---------------------------------------------------------------------------
# Parameters: initialization, shapes, packing
# ---------------------------------------------------------------------------


def param_shapes(n_visible: int, n_hidden: int) -> dict:
    """Shapes of the four parameter arrays, in the notes' layout."""
    return {
        "W1": (n_hidden, n_visible),
        "b1": (n_hidden,),
        "W2": (n_visible, n_hidden),
        "b2": (n_visible,),
    }


def init_params(n_visible, n_hidden, rng=None, dtype=np.float64) -> dict:
    """UFLDL's initializeParameters.

    W1 (n_hidden, n_visible) and W2 (n_visible, n_hidden) are drawn uniformly
    from [-r, r] with r = sqrt(6 / (n_visible + n_hidden + 1)); b1 (n_hidden,)
    and b2 (n_visible,) are zero.

    rng: a ``numpy.random.Generator``, an int seed, or None (fresh entropy).
    dtype: float32 or float64, the dtype of every returned array.
    """
    n_visible = _check_count("n_visible", n_visible)
    n_hidden = _check_count("n_hidden", n_hidden)
    dtype = _check_dtype("dtype", dtype)
    rng = as_generator(rng)
    r = np.sqrt(6.0 / (n_visible + n_hidden + 1))
    shapes = param_shapes(n_visible, n_hidden)
    return {
        "W1": rng.uniform(-r, r, size=shapes["W1"]).astype(dtype),
        "b1": np.zeros(shapes["b1"], dtype=dtype),
        "W2": rng.uniform(-r, r, size=shapes["W2"]).astype(dtype),
        "b2": np.zeros(shapes["b2"], dtype=dtype),
    }


def as_generator(rng) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a Generator, an int seed or None."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(
        f"rng: expected a numpy.random.Generator, an int seed or None, got {rng!r}"
    )


# The packed order is UFLDL's: theta = [W1, W2, b1, b2], each flattened in
# C (row-major) order.
PACK_ORDER = ("W1", "W2", "b1", "b2")


def pack(params) -> np.ndarray:
    """Flatten params into one 1-D vector theta = [W1, W2, b1, b2].

    Each block is flattened in row-major (C) order. The result has the
    params' dtype and length 2 * n_visible * n_hidden + n_hidden + n_visible.
    """
    return np.concatenate([np.ravel(params[name]) for name in PACK_ORDER])


def unpack(theta, n_visible, n_hidden) -> dict:
    """Inverse of ``pack``: views into ``theta``, not copies.

    Writing into a returned array writes into ``theta`` (this is what lets
    the gradient checker and scipy share one buffer with the model).
    """
    n_visible = _check_count("n_visible", n_visible)
    n_hidden = _check_count("n_hidden", n_hidden)
    shapes = param_shapes(n_visible, n_hidden)
    params = _split_theta(theta, {name: shapes[name] for name in PACK_ORDER},
                         f"n_visible={n_visible}, n_hidden={n_hidden}")
    return {name: params[name] for name in PARAM_NAMES}


def _split_theta(theta, shapes, described):
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


# ---------------------------------------------------------------------------
# The activation function f and the KL divergence
# ---------------------------------------------------------------------------


def sigmoid(z, out=None):
    """f(z) = 1 / (1 + exp(-z)), elementwise, computed as 0.5 * tanh(0.5 * z) + 0.5.

    The two are the same function (1 / (1 + exp(-z)) = (1 + tanh(z/2)) / 2).
    The tanh form never overflows and never warns, for any z including
    +-inf, in float32 and float64: tanh stays in [-1, 1]. It costs one
    transcendental and three cheap passes, in place, with no temporary.

    Accuracy: the absolute error is within one unit of the dtype's epsilon
    (measured: at most 0.5 eps for z in [-40, 40]), but where f(z) is tiny
    the relative error grows: near 0 the results are multiples of about
    eps/2 (1e-16 in float64, 6e-8 in float32), and f(z) is exactly 0 once
    tanh(z/2) rounds to -1, for z below about -38 in float64 (true value
    < 4e-17) and -20 in float32 (true value < 3e-9). In this model that is
    harmless: the
    activations enter the cost and the gradient through a2, a3 and
    a (1 - a), whose absolute errors are what matter, and rho_hat is
    clipped to [eps, 1 - eps] anyway.

    Returns an array of z's shape in the float dtype NumPy's ufuncs give z
    (float32 stays float32); a scalar for a scalar. ``out`` may be ``z``
    itself (in-place).
    """
    z = np.asarray(z)
    scalar = out is None and z.ndim == 0
    if out is None:
        out = np.empty(z.shape, dtype=np.result_type(z.dtype, np.float16))
    np.multiply(z, 0.5, out=out)          # z / 2
    np.tanh(out, out=out)                 # tanh(z / 2), in [-1, 1]
    out *= 0.5
    out += 0.5                            # (1 + tanh(z / 2)) / 2
    return out[()] if scalar else out


def kl_divergence(rho, rho_hat):
    """KL(rho || rho_hat) elementwise, for Bernoulli means.

    KL(rho || r) = rho log(rho / r) + (1 - rho) log((1 - rho) / (1 - r)).
    ``rho_hat`` must already be clipped away from 0 and 1 (see
    ``clip_rho_hat``).
    """
    return rho * np.log(rho / rho_hat) + (1 - rho) * np.log((1 - rho) / (1 - rho_hat))


def clip_rho_hat(rho_hat):
    """Keep rho_hat in [eps, 1 - eps], eps the dtype's machine epsilon.

    A unit that is saturated on every example has rho_hat exactly 0 or 1 in
    floating point, where KL and its derivative are infinite. Clipping keeps
    both finite (at most about log(1/eps) and 1/eps) and changes nothing for
    any rho_hat that floating point can tell apart from 0 and 1 by more than
    eps. Only the KL term uses the clipped value.
    """
    eps = np.finfo(rho_hat.dtype).eps
    return np.clip(rho_hat, eps, 1 - eps)


# ---------------------------------------------------------------------------
# Forward pass
# ---------------------------------------------------------------------------


def encode(params, X):
    """Hidden activations a2 = f(X @ W1.T + b1), shape (m, n_hidden)."""
    params = check_params(params)
    X = check_X(X, params, decoder=None)
    return _encode(params, X)


def decode(params, A2, decoder="sigmoid"):
    """Reconstruction a3 from hidden activations A2 (m, n_hidden).

    z3 = A2 @ W2.T + b2, shape (m, n_visible); a3 = f(z3) for the sigmoid
    decoder, a3 = z3 for the linear one.
    """
    params = check_params(params)
    _check_choice("decoder", decoder, DECODERS)
    n_visible, n_hidden = params["W2"].shape
    A2 = _check_matrix("A2", A2, n_hidden, params["W1"].dtype)
    return _decode(params, A2, decoder)


def _encode(params, X):
    z2 = X @ params["W1"].T                  # (m, n_hidden)
    z2 += params["b1"]
    return sigmoid(z2, out=z2)               # a2, in place of z2


def _decode(params, a2, decoder):
    z3 = a2 @ params["W2"].T                 # (m, n_visible)
    z3 += params["b2"]
    if decoder == "sigmoid":
        return sigmoid(z3, out=z3)           # a3, in place of z3
    return z3                                # linear decoder: a3 = z3


# ---------------------------------------------------------------------------
# Cost and gradient
# ---------------------------------------------------------------------------

# cost_and_grad does its elementwise work (sigmoids, residuals, deltas) one
# block of rows at a time. A block of this many bytes of X keeps that block
# of X, of delta3 and of a3 together in a core's L2 cache (2 MiB on the
# machine this was tuned on) while those steps pass over them several times.
# The matrix products are not split into blocks: each is one BLAS call over
# all m rows, which keeps BLAS's threads busy and in step (many small
# multithreaded calls stall badly when other programs share the cores).
BLOCK_BYTES = 256 * 1024


def _row_blocks(m, width, dtype):
    """Slices of rows that cover range(m) in order, each about BLOCK_BYTES of a (m, width) array."""
    rows = max(1, BLOCK_BYTES // (width * np.dtype(dtype).itemsize))
    return [slice(start, min(start + rows, m)) for start in range(0, m, rows)]


def cost_terms(params, X, *, penalty="kl", rho=0.01, beta=3.0, lam=1e-4,
               decoder="sigmoid") -> dict:
    """The parts of J, one forward pass, no gradient.

    Returns a dict of Python floats: ``reconstruction``, ``weight_decay``,
    ``sparsity``, ``cost`` (their sum, the notes' J) and ``mean_rho_hat``
    (the mean over hidden units of rho_hat_j). Arguments as ``cost_and_grad``.
    """
    # Python floats keep float32 arithmetic float32 (NumPy's promotion rules).
    params, X, rho, beta, lam = _check_call(params, X, penalty, rho, beta, lam, decoder)
    a2 = _encode(params, X)                                  # (m, n_hidden)
    rho_hat = a2.mean(axis=0)                                # (n_hidden,)
    residual = _decode(params, a2, decoder)                  # a3, (m, n_visible)
    residual -= X                                            # a3 - X, in place
    return _terms(_sum_of_squares(residual), X.shape[0], params, rho_hat, penalty, rho, beta, lam)


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


def cost_and_grad(params, X, *, penalty="kl", rho=0.01, beta=3.0, lam=1e-4,
                  decoder="sigmoid"):
    """The notes' cost J and its gradient, vectorized over the m rows of X.

    params: dict of W1 (n_hidden, n_visible), b1 (n_hidden,),
            W2 (n_visible, n_hidden), b2 (n_visible,), all float32 or all
            float64; that dtype is the computation's dtype.
    X:      (m, n_visible), one example per row. With the sigmoid decoder
            its values must lie in [0, 1].
    penalty: "kl", "l1" or "none"; rho: target activation, 0 < rho < 1
            (KL only); beta: sparsity weight >= 0; lam: weight decay >= 0;
    decoder: "sigmoid" or "linear".

    Returns (cost, grads): cost a Python float, grads a dict with the keys,
    shapes and dtype of params.

    Forward:   z2 = X @ W1.T + b1,  a2 = f(z2)                  (m, n_hidden)
               z3 = a2 @ W2.T + b2, a3 = f(z3) or z3            (m, n_visible)
               rho_hat = mean of a2 over rows                   (n_hidden,)
    Backward:  delta3 = (a3 - X) * f'(z3)   [linear: a3 - X]    (m, n_visible)
               delta2 = (delta3 @ W2 + sparsity_delta) * f'(z2)  (m, n_hidden)
               sparsity_delta = beta * (-rho/rho_hat + (1-rho)/(1-rho_hat))  (KL)
                              = beta                                        (L1)
               dJ/dW2 = delta3.T @ a2 / m + lam * W2,  dJ/db2 = sum of delta3 rows / m
               dJ/dW1 = delta2.T @ X  / m + lam * W1,  dJ/db1 = sum of delta2 rows / m
    with f'(z) = f(z) (1 - f(z)), so f'(z2) = a2 (1 - a2) and f'(z3) = a3 (1 - a3).

    How it is computed: each of the five matrix products above is one call
    over all m rows; the elementwise steps between them go block by block
    over the rows (see BLOCK_BYTES), in place, and the sums over examples
    (rho_hat, the squared error, dJ/db1, dJ/db2) are sums of block sums.
    a2 and rho_hat come first, for all rows (the sparsity term needs
    rho_hat before any delta2). The array z3 becomes a3 - X (for the cost)
    and then delta3 in place; a3 lives in a block-sized buffer. Extra
    memory: that one array as large as X, plus a2 and delta2 (m, n_hidden).
    """
    params, X, rho, beta, lam = _check_call(params, X, penalty, rho, beta, lam, decoder)
    return _cost_and_grad(params, X, penalty, rho, beta, lam, decoder)


def _cost_and_grad(params, X, penalty, rho, beta, lam, decoder):
    """cost_and_grad without any checks of its arguments.

    For callers that have already validated them with ``_check_call`` (as
    ``cost_and_grad`` does): X a 2-D array of the params' dtype, rho, beta,
    lam Python floats. A training loop that calls it many times on the same
    X may check once and call this; anything else should call
    ``cost_and_grad``. Python floats keep float32 arithmetic float32.
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
    rho_hat = _hidden_activations(a2, b1, hidden_blocks)     # a2 = f(z2) in place; (n_hidden,)

    # Output layer: z3, then a3 - X (for the cost), then delta3, in one array.
    delta3 = a2 @ W2.T                                       # z3 without b2, (m, n_visible)
    squared_error, grad_b2 = _output_deltas(delta3, X, b2, decoder, visible_blocks)
    grad_W2 = delta3.T @ a2                                  # sum_i delta3 a2^T, (n_visible, n_hidden)

    # Hidden layer: delta2 = (W2^T delta3 + sparsity_delta) * f'(z2).
    delta2 = delta3 @ W2                                     # W2^T delta3, (m, n_hidden)
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
        sigmoid(a, out=a)                                    # a2 = f(z2), in place of z2
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
            a3 = sigmoid(d, out=a3_buffer[:size])            # a3 = f(z3)
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
    """Turn delta2, holding W2^T delta3, into (W2^T delta3 + sparsity_delta) * f'(z2), in place.

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
    """(lam/2) (||W1||_F^2 + ||W2||_F^2); the biases are not decayed."""
    return 0.5 * lam * (_sum_of_squares(params["W1"]) + _sum_of_squares(params["W2"]))


def _sparsity(rho_hat, penalty, rho, beta):
    """The sparsity term of J, from rho_hat (n_hidden,)."""
    if penalty == "kl":
        return beta * float(kl_divergence(rho, clip_rho_hat(rho_hat)).sum())
    if penalty == "l1":
        # beta (1/m) sum_i sum_j a2_ij = beta * sum_j rho_hat_j (a2 > 0).
        return beta * float(rho_hat.sum())
    return 0.0


def _sparsity_delta(rho_hat, penalty, rho, beta):
    """d(sparsity term)/d a2_ij times m, the same for every row: (n_hidden,)."""
    if penalty == "kl":
        r = clip_rho_hat(rho_hat)
        return beta * (-rho / r + (1 - rho) / (1 - r))
    if penalty == "l1":
        return beta
    return None


# ---------------------------------------------------------------------------
# Validation: clear errors at the entry points
# ---------------------------------------------------------------------------


def check_params(params) -> dict:
    """Return params if it is a well-formed parameter dict, else raise.

    Expected: a dict with exactly the keys W1, b1, W2, b2; 2-D W1
    (n_hidden, n_visible), W2 (n_visible, n_hidden), 1-D b1 (n_hidden,),
    b2 (n_visible,); all of one dtype, float32 or float64; all finite.
    """
    if not isinstance(params, dict):
        raise TypeError(
            f"params: expected a dict with keys {', '.join(PARAM_NAMES)}, "
            f"got {type(params).__name__}"
        )
    keys = set(params)
    if keys != set(PARAM_NAMES):
        raise ValueError(
            f"params: expected keys {', '.join(PARAM_NAMES)}, got {', '.join(map(str, sorted(keys, key=str)))}"
        )
    for name in PARAM_NAMES:
        if not isinstance(params[name], np.ndarray):
            raise TypeError(
                f"params['{name}']: expected a numpy array, got {type(params[name]).__name__}"
            )
    W1 = params["W1"]
    if W1.ndim != 2:
        raise ValueError(f"params['W1']: expected a 2-D array (n_hidden, n_visible), got shape {W1.shape}")
    n_hidden, n_visible = W1.shape
    for name, shape in param_shapes(n_visible, n_hidden).items():
        if params[name].shape != shape:
            raise ValueError(
                f"params['{name}']: expected shape {shape} to match W1 {W1.shape}, "
                f"got {params[name].shape}"
            )
    dtype = W1.dtype
    if dtype not in DTYPES:
        raise TypeError(f"params['W1']: expected dtype float32 or float64, got {dtype}")
    for name in PARAM_NAMES:
        if params[name].dtype != dtype:
            raise TypeError(
                f"params['{name}']: expected dtype {dtype} like W1, got {params[name].dtype}"
            )
        if not _all_finite(params[name]):
            raise ValueError(
                f"params['{name}']: expected finite values, found NaN or infinity "
                f"(parameters from a run that diverged?)"
            )
    return params


def _all_finite(A):
    """True if every value of the float array A is finite.

    One sum first (a single fast pass; NaN and infinity propagate into it),
    and the exact elementwise test only when the sum is not finite, which a
    sum of huge but finite values can also be.
    """
    with np.errstate(over="ignore", invalid="ignore"):
        total = A.sum()
    return bool(np.isfinite(total)) or bool(np.isfinite(A).all())


def check_X(X, params, decoder="sigmoid"):
    """Return X as a 2-D array of the params' dtype, or raise a clear error.

    X must be 2-D (m, n_visible) with m >= 1, real numbers, all finite; with
    the sigmoid decoder (``decoder="sigmoid"``) all values must lie in
    [0, 1]. ``decoder=None`` skips the range check (encoding only).
    Converts to the params' dtype once, if needed.
    """
    n_visible = params["W1"].shape[1]
    return _check_matrix("X", X, n_visible, params["W1"].dtype, decoder)


def _check_matrix(name, A, width, dtype, decoder=None):
    if not isinstance(A, np.ndarray):
        try:
            A = np.asarray(A)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name}: expected a 2-D array of numbers, got {type(A).__name__}") from exc
    if A.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected an array of real numbers, got dtype {A.dtype}")
    if A.ndim != 2:
        hint = " (use X.reshape(1, -1) for a single example)" if A.ndim == 1 else ""
        raise ValueError(f"{name}: expected a 2-D array (m, {width}), got shape {A.shape}{hint}")
    if A.shape[1] != width or A.shape[0] < 1:
        raise ValueError(f"{name}: expected shape (m, {width}) with m >= 1, got {A.shape}")
    A = A.astype(dtype, copy=False)
    if decoder == "sigmoid" and _in_unit_interval(A):
        return A                          # one pass showed every value finite and in [0, 1]
    lo, hi = A.min(), A.max()             # NaN propagates into min and max
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"{name}: expected finite values, found NaN or infinity")
    if decoder == "sigmoid" and (lo < 0 or hi > 1):
        raise ValueError(
            f"{name}: the sigmoid decoder needs values in [0, 1], got values in "
            f"[{lo:.4g}, {hi:.4g}]; {_rescale_hint(lo, hi)}"
        )
    return A


def _in_unit_interval(A):
    """True if every value of the float32/float64 array A is in [+0, 1]; one pass.

    A cheap first test for check_X, which calls it on every cost evaluation:
    one integer max instead of a float min and a float max. It reads each
    float's bits as an unsigned integer of the same width. Floats from +0 to
    1 have the bit patterns from 0 up to that of 1.0, in order. Everything
    else reads larger: negative numbers have the sign bit (the top bit) set,
    and values above 1, infinity and NaN have larger exponent bits. -0.0
    (the sign bit alone) also reads larger, so a False only means "look
    closer", which _check_matrix does with min and max.
    """
    unsigned = np.dtype(f"u{A.dtype.itemsize}")
    one = np.array(1, dtype=A.dtype).view(unsigned)
    return bool(A.view(unsigned).max() <= one)


def _check_call(params, X, penalty, rho, beta, lam, decoder):
    params = check_params(params)
    _check_choice("penalty", penalty, PENALTIES)
    _check_choice("decoder", decoder, DECODERS)
    check_hyperparameters(rho=rho, beta=beta, lam=lam)
    X = check_X(X, params, decoder)
    smallest = np.finfo(X.dtype).tiny
    if rho < smallest:
        raise ValueError(f"rho: expected at least {smallest:.3g} (the smallest normal "
                         f"{X.dtype} number), got {rho!r}")
    return params, X, float(rho), float(beta), float(lam)


def check_hyperparameters(*, rho, beta, lam):
    """Raise unless 0 < rho < 1, beta >= 0 and lam >= 0 (all finite reals)."""
    for name, value in (("rho", rho), ("beta", beta), ("lam", lam)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not _finite_real(value):
            raise TypeError(f"{name}: expected a finite real number, got {value!r}")
    if not 0 < rho < 1:
        raise ValueError(f"rho: expected a target activation strictly between 0 and 1, got {rho!r}")
    if beta < 0:
        raise ValueError(f"beta: expected a sparsity weight >= 0, got {beta!r}")
    if lam < 0:
        raise ValueError(f"lam: expected a weight decay >= 0, got {lam!r}")


def _finite_real(value):
    """True if the real number ``value`` is finite as a float (False for 10**400, too)."""
    try:
        return np.isfinite(float(value))
    except OverflowError:
        return False


def _rescale_hint(lo, hi):
    """What to do about data outside [0, 1] for the sigmoid decoder."""
    if lo >= 0 and 1 < hi <= 255:
        return ("if these are 0-255 pixel values, divide them by 255; otherwise rescale "
                "into [0, 1] or use decoder='linear'")
    return ("rescale the data into [0, 1] (for image patches, "
            "patches.normalize_for_sigmoid) or use decoder='linear'")


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def _check_count(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer (>= 1), got {value!r}")
    return int(value)


def _check_dtype(name, dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name}: expected float32 or float64, got {dtype!r}") from exc
    if dt not in DTYPES:
        raise TypeError(f"{name}: expected float32 or float64, got {dt}")
    return dt
