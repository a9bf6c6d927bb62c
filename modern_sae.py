"""Today's sparse autoencoders, in the notes' style: ReLU + L1 and TopK.

Read ``sparse_autoencoder.cost_and_grad`` first (the notes' model), then
docs/modern_sae.md (the bridge: what changes and why, every gradient derived
by hand, and which source each rule comes from), then the two
``*_cost_and_grad`` functions below, one equation a line, with the notes' names.

Both models keep the notes' parameter dict and shapes: ``W1`` (n_hidden,
n_visible) the encoder, ``b1`` (n_hidden,), ``W2`` (n_visible, n_hidden) the
decoder, whose column ``W2[:, j]`` is latent j's feature, ``b2``
(n_visible,). So ``pack``, ``unpack``, ``check_params`` and every tool that
takes params work on them unchanged. Both decoders are linear,
x_hat = W2 a2 + b2 (rows: x_hat = a2 @ W2.T + b2, (m, n_visible)); the
encoders differ:

    ReLU + L1   z2 = W1 x + b1               rows: z2 = X @ W1.T + b1          (m, n_hidden)
                a2 = max(z2, 0)
    TopK        z2 = W1 (x - b2) + b1        rows: z2 = (X - b2) @ W1.T + b1   (m, n_hidden)
                a2 = max(z2, 0) on the k largest z2 of each row, 0 elsewhere

Reconstruction, in both models and everywhere in the project, is the notes'
(1/m) sum_i 1/2 ||x_hat_i - x_i||^2.

ReLU + L1 (Anthropic's April 2024 update and "Scaling Monosemanticity"):
J = reconstruction + l1 (1/m) sum_i sum_j a2_ij ||W2[:, j]|| (+ lam/2
(||W1||^2 + ||W2||^2), 0 by default). No pre-encoder bias: the x - b_dec of
"Towards Monosemanticity" (2023) is gone from their 2024 encoder.

TopK (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): no
penalty; the decoder's columns have unit norm (training normalizes them,
projects the gradient, then steps: ``normalize_decoder``,
``project_decoder_grad``; the cost function itself never renormalizes);
b2 starts at the geometric median of the data (``geometric_median``,
Weiszfeld's algorithm). Optional AuxK (their appendix on dead latents):
alpha c L_aux, see ``topk_cost_and_grad``.

The gradients are derived by hand in docs/modern_sae.md, checked against
central differences by ``python gradcheck.py --section modern`` (at points
away from the kinks, with the selection frozen and checked unchanged) and
against the per-example loops at the end of this file (``loop_relu_l1_cost_and_grad``,
``loop_topk_cost_and_grad``) by the tests. Argument checks live in
``saelab/checks/validation.py``; training (schedules, input scaling, the
order of the decoder's moves) in ``saelab/training/modern.py``.
"""

from __future__ import annotations

import math

import numpy as np

from saelab.checks.validation import (check_A2, check_count, check_dead, check_decoder,
                                     check_decoder_grad, check_init, check_k, check_matrix,
                                     check_modern_X, check_params, check_relu_l1_call,
                                     check_spread, check_topk_call, check_z2)

__all__ = ["loop_relu_l1_cost_and_grad", "loop_topk_cost_and_grad", "MODELS", "init_relu_l1", "init_topk",
           "geometric_median", "relu_l1_cost_and_grad", "relu_l1_cost_terms",
           "topk_cost_and_grad", "topk_cost_terms", "preactivations", "relu_preactivations",
           "encode_relu", "encode_topk", "decode_linear", "topk_mask", "auxk_mask",
           "project_decoder_grad", "normalize_decoder", "column_norms", "mean_prediction_scale",
           "RELU_L1_INIT_NORM", "GEOMETRIC_MEDIAN_SAMPLE"]

MODELS = ("relu_l1", "topk")
RELU_L1_INIT_NORM = 0.1            # ReLU + L1's initial decoder column norm (SAELens', dictionary_learning's)
GEOMETRIC_MEDIAN_SAMPLE = 32768    # rows of X that b2's geometric median is computed on (OpenAI's train.py)


# ---------------------------------------------------------------------------
# Initialization
# ---------------------------------------------------------------------------


def init_relu_l1(n_visible, n_hidden, rng=None, dtype=np.float64) -> dict:
    """Anthropic's initialization (April 2024 update), in the notes' layout.

    W2 (n_visible, n_hidden): columns in uniformly random directions, each of
    norm RELU_L1_INIT_NORM = 0.1 (a small fixed norm; 0.1 is the value of the
    reimplementations SAELens and dictionary_learning); W1 = W2.T (a copy:
    tied at the start only); b1 = 0 and b2 = 0.

    rng: a ``numpy.random.Generator``, an int seed, or None. dtype: float32 or float64.
    """
    n_visible, n_hidden, rng, dtype = check_init(n_visible, n_hidden, rng, dtype)
    return _tied_init(n_visible, n_hidden, rng, dtype, RELU_L1_INIT_NORM, np.zeros(n_visible))


def init_topk(n_visible, n_hidden, rng=None, dtype=np.float64, X=None) -> dict:
    """Gao et al.'s initialization, in the notes' layout.

    W2 (n_visible, n_hidden): columns in uniformly random directions, of unit
    norm; W1 = W2.T (a copy: tied at the start only); b1 = 0. b2 = the
    geometric median of the first GEOMETRIC_MEDIAN_SAMPLE rows of X (m,
    n_visible) if X is given (``geometric_median``; the paper: "a sample set
    of data points"), else 0.

    rng: a ``numpy.random.Generator``, an int seed, or None. dtype: float32 or float64.
    """
    n_visible, n_hidden, rng, dtype = check_init(n_visible, n_hidden, rng, dtype)
    b2 = np.zeros(n_visible)
    if X is not None:
        X = check_matrix("X", X, n_visible, np.float64)
        b2 = geometric_median(X[:GEOMETRIC_MEDIAN_SAMPLE])
    return _tied_init(n_visible, n_hidden, rng, dtype, 1.0, b2)


def _tied_init(n_visible, n_hidden, rng, dtype, column_norm, b2):
    directions = rng.standard_normal((n_visible, n_hidden))       # isotropic: random directions
    W2 = (column_norm * normalize_decoder(directions)).astype(dtype)
    return {"W1": W2.T.copy(), "b1": np.zeros(n_hidden, dtype=dtype), "W2": W2,
            "b2": np.asarray(b2).astype(dtype)}


def geometric_median(X, *, max_iter=1000, tol=1e-10, eps=1e-12):
    """The point y minimizing sum_i ||x_i - y|| over the rows x_i of X (m, n), by Weiszfeld's algorithm.

    The mean minimizes the sum of *squared* distances; the geometric median
    the sum of distances, so a few far-away rows pull it less. There is no
    formula for it, but setting the gradient of sum_i ||x_i - y|| to zero,
    sum_i (y - x_i) / ||x_i - y|| = 0, says that y is a weighted mean of the
    rows with weights 1 / ||x_i - y||. Weiszfeld's iteration uses the
    current y to compute the weights, and the weighted mean as the next y:

        y = mean of X                                 the start (as geom_median and
                                                      dictionary_learning start)
        repeat: d_i = ||x_i - y||,  w_i = 1 / max(d_i, eps),  y = sum_i w_i x_i / sum_i w_i

    Each step lowers sum_i ||x_i - y|| (unless y is already the median). A
    y that lands on a row (d_i = 0) would divide by zero: eps, relative to
    the rows' spread, caps that weight (geom_median's "smoothing"). Stops
    when a step moves y by at most tol times the rows' spread, or after
    max_iter steps (1000: near a row it can crawl; geom_median, which OpenAI's code uses, stops
    at 100, and on MNIST the step falls below tol within 10).

    X: finite real numbers, (m, n), m >= 1. Returns y (n,), float64.
    """
    X = _rows(X)
    y = X.mean(axis=0)                                              # (n,)
    spread = np.sqrt(np.mean(np.sum((X - y) ** 2, axis=1)))         # rms distance to the mean
    if spread == 0:
        return y                                                    # every row the same
    for _ in range(max_iter):
        distances = np.sqrt(np.sum((X - y) ** 2, axis=1))           # (m,): ||x_i - y||
        weights = 1 / np.maximum(distances, eps * spread)           # (m,)
        y_next = weights @ X / np.sum(weights)                      # (n,): the weighted mean
        step = np.sqrt(np.sum((y_next - y) ** 2))
        y = y_next
        if step <= tol * spread:
            break
    return y


def _rows(X):
    """X as a finite float64 (m, n) array, m >= 1, or an error naming X (a 1-D X is refused)."""
    return check_matrix("X", X, np.shape(X)[1] if np.ndim(X) == 2 else 1, np.float64)


def mean_prediction_scale(X):
    """c = (1/2m) sum_i ||x_i - x_mean||^2: the notes' reconstruction term of the model that
    predicts the mean row for every x. X (m, n_visible), finite; returns a Python float.

    OpenAI's code measures its main loss in this unit (its ``mse_scale``, from
    a sample of the data, computed once), and AuxK's alpha = 1/32 is relative to it;
    ``topk_cost_and_grad`` weighs L_aux by alpha * c (docs/modern_sae.md, "AuxK").
    """
    X = _rows(X)
    return float(np.sum((X - X.mean(axis=0)) ** 2) / (2 * X.shape[0]))


# ---------------------------------------------------------------------------
# The pieces: pre-activations, selection, decoder columns
# ---------------------------------------------------------------------------


def preactivations(params, X):
    """TopK's z2 = (X - b2) @ W1.T + b1, shape (m, n_hidden): its encoder before the selection."""
    params = check_params(params)
    X = check_modern_X(X, params)
    return _preactivations(params, X)


def _preactivations(params, X):
    return (X - params["b2"]) @ params["W1"].T + params["b1"]              # z2, (m, n_hidden)


def relu_preactivations(params, X):
    """ReLU + L1's z2 = X @ W1.T + b1, shape (m, n_hidden): no pre-encoder bias."""
    params = check_params(params)
    X = check_modern_X(X, params)
    return relu_preactivations_unchecked(params, X)


def relu_preactivations_unchecked(params, X):
    return X @ params["W1"].T + params["b1"]                                # z2, (m, n_hidden)


def topk_mask(z2, k):
    """bool (m, n_hidden): True at the k largest entries of each row of z2.

    O(m n_hidden): ``np.partition`` (the selection algorithm of
    ``np.argpartition``) finds each row's k-th largest value, then every
    entry above it is kept, and of the entries equal to it the ones with
    the lowest column indices, as many as are needed to make k. So ties are
    broken deterministically, towards lower indices, and every row has
    exactly k True.
    """
    z2 = check_z2(z2)
    return _topk_mask(z2, check_k("k", k, z2.shape[1]))


def _topk_mask(z2, k):
    n_hidden = z2.shape[1]
    kth_largest = np.partition(z2, n_hidden - k, axis=1)[:, [n_hidden - k]]   # (m, 1)
    above = z2 > kth_largest                                                  # (m, n_hidden)
    tied = z2 == kth_largest                                                  # (m, n_hidden)
    places_left = k - above.sum(axis=1, keepdims=True)                        # (m, 1)
    return above | (tied & (np.cumsum(tied, axis=1) <= places_left))


def auxk_mask(z2, dead, aux_k):
    """bool (m, n_hidden): in each row, the aux_k largest z2 among the dead latents.

    dead: bool (n_hidden,). When fewer than aux_k latents are dead, all of
    them are selected. No dead latent: no True. After the ReLU this is what
    Gao et al.'s code computes: it multiplies the live latents' z2 by 0 and
    takes the top aux_k of the row, so a live latent (at 0) may take the
    place of a dead one whose z2 is negative, and either gives ReLU 0.
    (dictionary_learning's reimplementation sets the live ones to -inf instead.)
    """
    z2 = check_z2(z2)
    dead = check_dead(dead, z2.shape[1])
    aux_k = check_count("aux_k", aux_k)
    return _auxk_mask(z2, np.zeros(z2.shape[1], dtype=bool) if dead is None else dead, aux_k)


def _auxk_mask(z2, dead, aux_k):
    dead_columns = np.flatnonzero(dead)                         # the dead latents' indices
    selected = np.zeros(z2.shape, dtype=bool)                   # (m, n_hidden)
    if dead_columns.size:
        chosen = _topk_mask(z2[:, dead_columns], min(aux_k, dead_columns.size))
        selected[:, dead_columns] = chosen
    return selected


def column_norms(W2):
    """||W2[:, j]|| for every latent j, shape (n_hidden,).

    A column so small that its squares underflow (norm below sqrt of the
    dtype's smallest normal number, about 1e-154 in float64) is measured
    scaled by its largest entry, so that it still gets its true norm, not 0.
    """
    norms = np.sqrt(np.sum(W2 ** 2, axis=0))                    # (n_hidden,)
    small = norms < np.sqrt(np.finfo(norms.dtype).tiny)
    if small.any():
        columns = W2[:, small]
        scale = np.max(np.abs(columns), axis=0)                 # (n_small,)
        safe = np.where(scale > 0, scale, 1)
        norms = norms.copy()
        norms[small] = scale * np.sqrt(np.sum((columns / safe) ** 2, axis=0))
    return norms


def normalize_decoder(W2):
    """A new array: W2 with every column divided by its norm (unit-norm columns).

    A column of zeros stays zero (it has no direction). This is the map
    W2 -> normalize(W2) that TopK training applies after every step.
    W2: a finite 2-D array; float32 and float64 stay, other real dtypes become float64.
    """
    return normalize_decoder_unchecked(check_decoder("W2", W2))


def normalize_decoder_unchecked(W2):
    W2 = np.asarray(W2)
    norms = column_norms(W2)                                    # (n_hidden,)
    return W2 / np.where(norms > 0, norms, 1)


def project_decoder_grad(W2, grad_W2):
    """grad_W2 with each column's component along that column of W2 removed.

    With u_j = W2[:, j] / ||W2[:, j]||: g_j - u_j (u_j . g_j), for every j.
    At a unit-norm W2 this is the gradient of theta -> J with W2 replaced
    by normalize(W2): the derivative of w / ||w|| at ||w|| = 1 is
    I - w w^T (docs/modern_sae.md). A step along it changes each column's
    direction and, to first order, not its norm.
    """
    W2, grad_W2 = check_decoder_grad(W2, grad_W2)
    return project_decoder_grad_unchecked(W2, grad_W2)


def project_decoder_grad_unchecked(W2, grad_W2):
    U = normalize_decoder_unchecked(W2)                                  # (n_visible, n_hidden)
    along = np.sum(U * grad_W2, axis=0)                         # (n_hidden,): u_j . g_j
    return grad_W2 - U * along


# ---------------------------------------------------------------------------
# ReLU + L1
# ---------------------------------------------------------------------------


def relu_l1_cost_and_grad(params, X, *, l1=1.0, lam=0.0):
    """J and its gradient for ReLU + L1 (Anthropic, April 2024), all m rows at once.

    params: W1 (n_hidden, n_visible), b1 (n_hidden,), W2 (n_visible, n_hidden),
            b2 (n_visible,); float32 or float64, the computation's dtype.
    X:      (m, n_visible), any finite values (training scales them first:
            saelab/training/modern.py).
    l1:     the sparsity weight >= 0 (their lambda / 2, since J keeps the
            notes' 1/2).   lam: weight decay >= 0 (default 0).

        z2 = X W1^T + b1;  a2 = max(z2, 0);  x_hat = a2 W2^T + b2    (no pre-encoder bias)
        J = (1/m) sum_i 1/2 ||x_hat_i - x_i||^2                   reconstruction
          + l1 (1/m) sum_i sum_j a2_ij ||W2[:, j]||               sparsity
          + (lam/2) (sum W1^2 + sum W2^2)                         weight decay

    Returns (cost, grads): a Python float and a dict with the params' keys,
    shapes and dtype. At the ReLU's kink, z2 = 0, the derivative 0 is used.
    docs/modern_sae.md derives each line of the backward pass.
    """
    params, X, l1, lam = check_relu_l1_call(params, X, l1, lam)
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    m = X.shape[0]

    # Forward pass.
    z2 = X @ W1.T + b1                                     # (m, n_hidden)
    a2 = np.maximum(z2, 0)                                 # (m, n_hidden): ReLU
    x_hat = a2 @ W2.T + b2                                 # (m, n_visible)
    norms = column_norms(W2)                               # (n_hidden,): ||W2[:, j]||

    # The cost J.
    reconstruction = np.sum((x_hat - X) ** 2) / (2 * m)
    sparsity = l1 * np.sum(a2 * norms) / m
    weight_decay = (lam / 2) * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    cost = reconstruction + sparsity + weight_decay

    # Backward pass: delta = m dJ/dz, as in the notes.
    delta3 = x_hat - X                                     # (m, n_visible); linear decoder
    delta2 = (delta3 @ W2 + l1 * norms) * (z2 > 0)         # (m, n_hidden); ReLU' = 1{z2 > 0}

    # The gradient: the notes' four lines, plus the penalty's pull on W2 through the norms.
    grad_W1 = delta2.T @ X / m + lam * W1                  # (n_hidden, n_visible)
    grad_b1 = delta2.sum(axis=0) / m                       # (n_hidden,)
    grad_W2 = (delta3.T @ a2 / m                           # (n_visible, n_hidden)
               + l1 * normalize_decoder_unchecked(W2) * a2.mean(axis=0)   # d||w||/dw = w / ||w||
               + lam * W2)
    grad_b2 = delta3.sum(axis=0) / m                       # (n_visible,)
    return float(cost), {"W1": grad_W1, "b1": grad_b1, "W2": grad_W2, "b2": grad_b2}


def relu_l1_cost_terms(params, X, *, l1=1.0, lam=0.0) -> dict:
    """The parts of ReLU + L1's J, from the forward pass alone.

    Arguments as ``relu_l1_cost_and_grad``. Returns Python floats:
    ``reconstruction`` ((1/m) sum_i 1/2 ||x_hat_i - x_i||^2), ``sparsity``,
    ``weight_decay`` and ``cost`` (their sum, J).
    """
    params, X, l1, lam = check_relu_l1_call(params, X, l1, lam)
    return relu_l1_cost_terms_unchecked(params, X, l1, lam)


def relu_l1_cost_terms_unchecked(params, X, l1, lam):
    """relu_l1_cost_terms without the checks (training's progress lines: a diverging run is reported)."""
    W1, W2 = params["W1"], params["W2"]
    m = X.shape[0]
    a2 = encode_relu_unchecked(params, X)                           # (m, n_hidden)
    x_hat = decode_linear_unchecked(params, a2)                     # (m, n_visible)
    terms = {
        "reconstruction": np.sum((x_hat - X) ** 2) / (2 * m),
        "sparsity": l1 * np.sum(a2 * column_norms(W2)) / m,
        "weight_decay": (lam / 2) * (np.sum(W1 ** 2) + np.sum(W2 ** 2)),
    }
    terms = {name: float(value) for name, value in terms.items()}
    terms["cost"] = sum(terms.values())
    return terms


# ---------------------------------------------------------------------------
# TopK, with the optional AuxK loss
# ---------------------------------------------------------------------------


def topk_cost_and_grad(params, X, *, k, aux_k=None, alpha=1 / 32, dead=None, lam=0.0,
                       aux_scale=None, mask=None, aux_mask=None, aux_target=None):
    """J and its gradient for TopK (Gao et al. 2024), all m rows at once.

    params, X: as ``relu_l1_cost_and_grad``; training keeps W2's columns at unit norm.
    k:       latents kept per example, 1 <= k <= n_hidden.
    aux_k:   None (no AuxK), or the number of dead latents AuxK uses per example.
    alpha:   AuxK's weight >= 0, relative to the data's variance (the paper's 1/32).
    dead:    None or bool (n_hidden,): the dead latents (AuxK uses only them;
             None or none dead: no AuxK term).
    lam:     weight decay >= 0 (default 0; the paper uses none).
    aux_scale: c >= 0, the unit alpha is relative to: the reconstruction term of
             the mean prediction, ``mean_prediction_scale`` of the training data
             (training passes it, computed once); None: that of X itself.
    mask, aux_mask: None, or a frozen selection, bool (m, n_hidden): used instead of
             ``topk_mask(z2, k)`` and ``auxk_mask(z2, dead, aux_k)`` (the gradient
             checker freezes them; the ReLU still applies).
    aux_target: None, or a frozen e (m, n_visible) for AuxK instead of X - x_hat.

    Forward (Gao et al.: z = TopK(W_enc (x - b_pre)), b_pre being our b2; their
    code adds an encoder bias, our b1, before the TopK):

        z2 = (x - b2) W1^T + b1;  a2 = ReLU of the k largest z2 of the row, 0 elsewhere
        x_hat = a2 W2^T + b2
        J = (1/m) sum_i 1/2 ||x_hat_i - x_i||^2 + alpha c L_aux + (lam/2) (sum W1^2 + sum W2^2)

    AuxK: e = X - x_hat (m, n_visible), held constant (no gradient flows into
    it); e_hat = a_aux @ W2.T, the reconstruction without b2 from a_aux, the
    ReLU of the aux_k largest z2 among the dead latents of each row;

        L_aux = sum_i ||e_i - e_hat_i||^2 / sum_i ||e_i - e_mean||^2,
        e_mean = (1/m) sum_i e_i  (n_visible,)

    both sums over all m examples and all n_visible coordinates: the
    normalized MSE of e_hat as a prediction of e over the batch (no 1/2 and
    no 1/m: they would cancel in the ratio). It needs m >= 2. Its weight is
    alpha c: OpenAI's loss is reconstruction / c + alpha L_aux, and J is that
    loss times the constant c (docs/modern_sae.md).

    Returns (cost, grads): a Python float and a dict of the params' keys,
    shapes and dtype. grads["W2"] is the raw gradient, not projected (see
    ``project_decoder_grad``); the AuxK part is the gradient with e held
    constant, as the paper's stop-gradient. At the kinks (ties at the k-th
    place, z2 = 0) the derivative of the selected piece is used.
    """
    (params, X, k, aux_k, alpha, dead, lam, aux_scale, mask, aux_mask, aux_target,
     spread_floor) = check_topk_call(params, X, k, aux_k, alpha, dead, lam, mask, aux_mask,
                                     aux_target, aux_scale)
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    m = X.shape[0]

    # Forward pass.
    x_bar = X - b2                                         # (m, n_visible): b2 subtracted first
    z2 = x_bar @ W1.T + b1                                 # (m, n_hidden)
    selected = _topk_mask(z2, k) if mask is None else mask # (m, n_hidden) bool, k per row
    a2 = selected * np.maximum(z2, 0)                      # (m, n_hidden): ReLU of the top k
    x_hat = a2 @ W2.T + b2                                 # (m, n_visible)

    # The cost J (AuxK's part below).
    reconstruction = np.sum((x_hat - X) ** 2) / (2 * m)
    weight_decay = (lam / 2) * (np.sum(W1 ** 2) + np.sum(W2 ** 2))

    # Backward pass: delta = m dJ/dz, as in the notes.
    delta3 = x_hat - X                                     # (m, n_visible)
    delta2_reconstruction = (delta3 @ W2) * selected * (z2 > 0)     # (m, n_hidden)

    # AuxK: the dead latents' best try at the residual e, held constant.
    if aux_k is not None and dead is not None and dead.any():
        c = np.sum((X - X.mean(axis=0)) ** 2) / (2 * m) if aux_scale is None else aux_scale
        e = X - x_hat if aux_target is None else aux_target           # (m, n_visible)
        aux_selected = _auxk_mask(z2, dead, aux_k) if aux_mask is None else aux_mask
        a_aux = aux_selected * np.maximum(z2, 0)                      # (m, n_hidden)
        e_hat = a_aux @ W2.T                                          # (m, n_visible), no b2
        spread = np.sum((e - e.mean(axis=0)) ** 2)                    # sum_i ||e_i - e_mean||^2
        check_spread(spread, alpha * c, spread_floor)
        aux = alpha * c * np.sum((e_hat - e) ** 2) / spread
        aux_delta3 = (2 * alpha * c * m / spread) * (e_hat - e)       # (m, n_visible): m dJ/de_hat
        aux_delta2 = (aux_delta3 @ W2) * aux_selected * (z2 > 0)      # (m, n_hidden)
        aux_grad_W2 = aux_delta3.T @ a_aux / m                        # (n_visible, n_hidden)
    else:
        aux, aux_delta2, aux_grad_W2 = 0.0, 0.0, 0.0
    cost = reconstruction + aux + weight_decay
    delta2 = delta2_reconstruction + aux_delta2            # (m, n_hidden)

    # The gradient. b2 enters twice: in x_hat (+delta3) and in x_bar (-delta2 @ W1).
    grad_W1 = delta2.T @ x_bar / m + lam * W1              # (n_hidden, n_visible)
    grad_b1 = delta2.sum(axis=0) / m                       # (n_hidden,)
    grad_W2 = delta3.T @ a2 / m + aux_grad_W2 + lam * W2   # (n_visible, n_hidden), not projected
    grad_b2 = (delta3 - delta2 @ W1).sum(axis=0) / m       # (n_visible,)
    return float(cost), {"W1": grad_W1, "b1": grad_b1, "W2": grad_W2, "b2": grad_b2}


def topk_cost_terms(params, X, *, k, aux_k=None, alpha=1 / 32, dead=None, lam=0.0,
                    aux_scale=None) -> dict:
    """The parts of TopK's J, from the forward pass alone.

    Arguments as ``topk_cost_and_grad``. Returns Python floats:
    ``reconstruction`` ((1/m) sum_i 1/2 ||x_hat_i - x_i||^2), ``sparsity``
    (0.0: TopK has no penalty, k is the constraint), ``auxk`` (alpha c L_aux,
    0.0 without AuxK or dead latents), ``weight_decay`` and ``cost`` (J).
    """
    params, X, k, aux_k, alpha, dead, lam, aux_scale, *_, spread_floor = check_topk_call(
        params, X, k, aux_k, alpha, dead, lam, aux_scale=aux_scale)
    return topk_cost_terms_unchecked(params, X, k, aux_k, alpha, dead, lam, spread_floor, aux_scale)


def topk_cost_terms_unchecked(params, X, k, aux_k, alpha, dead, lam, spread_floor=0.0,
                              aux_scale=None):
    """topk_cost_terms without the checks (training's progress lines: a diverging run is reported)."""
    W1, W2 = params["W1"], params["W2"]
    m = X.shape[0]
    z2 = _preactivations(params, X)                        # (m, n_hidden)
    a2 = _topk_mask(z2, k) * np.maximum(z2, 0)             # (m, n_hidden)
    x_hat = decode_linear_unchecked(params, a2)                     # (m, n_visible)
    terms = {
        "reconstruction": np.sum((x_hat - X) ** 2) / (2 * m),
        "sparsity": 0.0,
        "auxk": 0.0,
        "weight_decay": (lam / 2) * (np.sum(W1 ** 2) + np.sum(W2 ** 2)),
    }
    if aux_k is not None and dead is not None and dead.any():
        c = np.sum((X - X.mean(axis=0)) ** 2) / (2 * m) if aux_scale is None else aux_scale
        e = X - x_hat                                      # (m, n_visible)
        e_hat = (_auxk_mask(z2, dead, aux_k) * np.maximum(z2, 0)) @ W2.T
        spread = np.sum((e - e.mean(axis=0)) ** 2)
        check_spread(spread, alpha * c, spread_floor)
        terms["auxk"] = alpha * c * np.sum((e_hat - e) ** 2) / spread
    terms = {name: float(value) for name, value in terms.items()}
    terms["cost"] = sum(terms.values())
    return terms


# ---------------------------------------------------------------------------
# Encoding and decoding
# ---------------------------------------------------------------------------


def encode_relu(params, X):
    """ReLU + L1's features a2 = max(z2, 0), z2 = X @ W1.T + b1: (m, n_hidden)."""
    params = check_params(params)
    X = check_modern_X(X, params)
    return encode_relu_unchecked(params, X)


def encode_topk(params, X, k):
    """TopK's features: in each row the ReLU of the k largest z2, 0 elsewhere: (m, n_hidden)."""
    z2 = preactivations(params, X)                         # checks params and X
    return topk_mask(z2, k) * np.maximum(z2, 0)


def encode_topk_unchecked(params, X, k):
    z2 = _preactivations(params, X)                        # (m, n_hidden)
    return _topk_mask(z2, k) * np.maximum(z2, 0)


def decode_linear(params, A2):
    """The reconstruction x_hat = A2 @ W2.T + b2 from features A2 (m, n_hidden): (m, n_visible)."""
    params = check_params(params)
    A2 = check_A2(A2, params)
    return decode_linear_unchecked(params, A2)


def encode_relu_unchecked(params, X):
    return np.maximum(relu_preactivations_unchecked(params, X), 0)           # a2


def decode_linear_unchecked(params, a2):
    return a2 @ params["W2"].T + params["b2"]                                  # x_hat


# ---------------------------------------------------------------------------
# The literal reference: both models one example (a column) at a time
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
    For each example x (a column): z2 = W1 x + b1, a2 = max(z2, 0),
    x_hat = W2 a2 + b2;

        J = (1/m) sum_i 1/2 ||x_hat - x||^2 + l1 (1/m) sum_i sum_j a2_j ||W2[:, j]||
            + (lam/2) (sum W1^2 + sum W2^2)
        delta3 = x_hat - x
        delta2 = (W2^T delta3 + l1 ||W2[:, j]||_j) .* 1{z2 > 0}
        dJ/dW1 = (1/m) sum_i delta2 x^T + lam W1,     dJ/db1 = (1/m) sum_i delta2
        dJ/dW2[:, j] = (1/m) sum_i (delta3 a2_j + l1 a2_j W2[:, j] / ||W2[:, j]||) + lam W2[:, j]
        dJ/db2 = (1/m) sum_i delta3
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
        z2 = W1 @ x + b1
        a2 = np.maximum(z2, 0.0)
        x_hat = W2 @ a2 + b2
        squared_error += 0.5 * float(np.sum((x_hat - x) ** 2))
        for j in range(n_hidden):
            penalty += float(a2[j, 0]) * float(norms[j, 0])

        delta3 = x_hat - x
        delta2 = (W2.T @ delta3 + l1 * norms) * (z2 > 0)
        dW1 += delta2 @ x.T
        db1 += delta2
        dW2 += delta3 @ a2.T
        for j in range(n_hidden):
            if norms[j, 0] > 0:
                dW2[:, j] += l1 * a2[j, 0] * W2[:, j] / norms[j, 0]
        db2 += delta3

    cost = squared_error / m + l1 * penalty / m + (lam / 2) * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    grads = {
        "W1": dW1 / m + lam * W1,
        "b1": (db1 / m).ravel(),
        "W2": dW2 / m + lam * W2,
        "b2": (db2 / m).ravel(),
    }
    return float(cost), grads


def loop_topk_cost_and_grad(params, X, *, k, aux_k=None, alpha=1 / 32, dead=None, lam=0.0,
                            aux_scale=None):
    """TopK's J and gradient, AuxK included, one example (a column) at a time.

    Same arguments and return value as ``modern_sae.topk_cost_and_grad``
    (without the frozen masks). For each example x: x_bar = x - b2,
    z2 = W1 x_bar + b1; S = the k largest z2_j (ties: lower j first);
    a2_j = max(z2_j, 0) for j in S, else 0; x_hat = W2 a2 + b2.
    AuxK, with D the dead latents: e = x - x_hat (a constant);
    S_aux = the min(aux_k, |D|) largest z2_j over j in D; a_aux_j = max(z2_j, 0)
    for j in S_aux, else 0; e_hat = W2 a_aux;

        L_aux = sum_i ||e - e_hat||^2 / sum_i ||e - e_mean||^2,  e_mean = (1/m) sum_i e
        c = (1/m) sum_i 1/2 ||x - x_mean||^2  (unless aux_scale gives it),  x_mean = (1/m) sum_i x
        J = (1/m) sum_i 1/2 ||x_hat - x||^2 + alpha c L_aux + (lam/2) (sum W1^2 + sum W2^2)

    A first pass gets every e and x_mean (the normalizations need all of them,
    as rho_hat does in the notes); the second does the rest, with
    delta3 = x_hat - x, delta3_aux = (2 alpha c m / sum_i ||e - e_mean||^2) (e_hat - e),
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
    if aux_scale is None:
        examples = [X[i].reshape(-1, 1).astype(np.float64) for i in range(m)]
        x_mean = sum(examples) / m
        aux_scale = sum(0.5 * float(np.sum((x - x_mean) ** 2)) for x in examples) / m
    weight = alpha * aux_scale                        # AuxK's weight in J: alpha c

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
            delta3_aux = (2 * weight * m / spread) * (e_hat - e)
            back_aux = W2.T @ delta3_aux
            delta2 = delta2 + np.array([[back_aux[j, 0] if (j in S_aux and values[j] > 0) else 0.0]
                                        for j in range(n_hidden)])
            dW2 += delta3_aux @ a_aux.T
        dW1 += delta2 @ x_bar.T
        db1 += delta2
        db2 += delta3 - W1.T @ delta2

    cost = squared_error / m + (lam / 2) * (np.sum(W1 ** 2) + np.sum(W2 ** 2))
    if use_aux:
        cost += weight * aux_error / spread
    grads = {
        "W1": dW1 / m + lam * W1,
        "b1": (db1 / m).ravel(),
        "W2": dW2 / m + lam * W2,
        "b2": (db2 / m).ravel(),
    }
    return float(cost), grads
