"""A stacked autoencoder with a softmax classifier on top, fine-tuned as one network.

This is the maths of UFLDL's "Building Deep Networks for Classification"
(the pages "Stacked Autoencoders" and "Fine-tuning Stacked AEs", and the
exercise's ``stackedAECost.m``), written as ``sparse_autoencoder.cost_and_grad``
is: one equation a line, the notes' names, a shape comment on every line.
docs/stacked.md derives every line.

Layout. As in ``sparse_autoencoder.py``, the rows of ``X`` are the examples:
``X`` is ``(m, n_visible)``, and every array computed from it keeps one row
per example. The weights keep the notes' shapes: W^(l), the weights from
layer l to layer l+1, is ``(s_{l+1}, s_l)``, where s_l is the number of
units in layer l (the notes' name). Layer 1 is the input, a^(1) = X, and
layer L is the last hidden layer, a^(L), the features the softmax reads.

    notes (example i, a column)              this code (all m examples, rows)
    z^(l+1) = W^(l) a^(l) + b^(l)            a[l] @ W[l].T + b[l]            # (m, s_{l+1})
    a^(l+1) = f(z^(l+1))                     a[l + 1] = sigmoid(...)          # (m, s_{l+1})
    theta_j^T a^(L) (+ b_j)                  scores = a[L] @ theta.T (+ b)    # (m, n_classes)
    (W^(l))^T delta^(l+1)                    delta[l + 1] @ W[l]              # (m, s_l)
    sum_i delta^(l+1) (a^(l))^T              delta[l + 1].T @ a[l]            # (s_{l+1}, s_l)

Parameters. A dict

    {"stack":   [{"W": (s_2, s_1), "b": (s_2,)},         # W^(1), b^(1): the first encoder
                 {"W": (s_3, s_2), "b": (s_3,)},         # W^(2), b^(2)
                 ...],                                   # any number of encoders, >= 1
     "softmax": {"W": (n_classes, s_L), "b": (n_classes,)}}

``params["stack"][l - 1]`` holds the notes' W^(l) and b^(l), so a stack of
K encoders has L = K + 1 layers of units, counting the input.
``params["softmax"]["W"]`` is UFLDL's softmaxTheta, called ``theta`` in the
code (row j is theta_j). The softmax bias ``"b"`` is optional: UFLDL's
stackedAECost has none (leave the key out for that exact model); this
repository's softmax regression (``train_softmax``) has one by default.
With it, b_j is added to every score of class j, and it is never
weight-decayed. Every array is float32 or every array is float64: that
dtype is the dtype of the whole computation (X is converted to it once,
on entry).

The cost. With P the class probabilities (p_ij = exp(score_ij) / sum_k
exp(score_ik)), y the labels 0 .. n_classes-1 (UFLDL counts from 1):

    J = -(1/m) sum_i log p_{i, y_i}  +  (lam/2) ||theta||_F^2

Only the softmax weights theta are decayed, not the encoder weights and
no bias. That is what most public solutions of the exercise do (12 of the
14 stackedAECost.m on GitHub read for this, e.g. dwalling/ufldl-hacking:
"% no weight decay on stack"; RohanDoshi2018/Stanford_UFLDL_Tutorial:
"weight penalty is missing from lower terms"). UFLDL itself does not
settle it: its starter ``stackedAECost.m`` leaves the body blank ("lambda:
the weight regularization penalty"), its ``stackedAEExercise.m`` defines a
single lambda = 3e-3 (the autoencoders' "weight decay parameter") and
leaves the fine-tuning call to the student, and the "Fine-tuning Stacked
AEs" page writes the cost as J(W,b) = [(1/m) sum_i J(W,b; x^(i), y^(i))],
with no decay term at all. The other 2 solutions decay every stack W as well
(e.g. lymhust/Liveness-Detection), as the newer UFLDL tutorial's multilayer
exercise asks (amaas/stanford_dl_ex, supervised_dnn_cost.m: "weight
penalty ... for non-bias terms"). docs/stacked.md has the links.

The deltas. Here delta^(l) is the derivative of the whole cost J with
respect to z^(l) of each example (row i of delta[l] is dJ/dz^(l) of example
i). That includes the 1/m of the average, so the gradients are plain sums
over the examples with no "/ m". The notes' delta (and the one in
``sparse_autoencoder.py`` and in ``loop_cost_and_grad`` below) is m times
this: the same numbers, the 1/m applied at the end instead.

``loop_cost_and_grad`` at the bottom of this file computes the same cost
and gradient one example at a time, as the notes do; the tests hold the two
equal to 1e-10. Argument checks are in ``_check_call``, below the maths.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from sparse_autoencoder import sigmoid

__all__ = ["stack_from_autoencoders", "init_stacked_params", "forward", "cost_and_grad",
           "predict", "pack", "unpack", "loop_cost_and_grad"]


# ---------------------------------------------------------------------------
# Building the parameters
# ---------------------------------------------------------------------------


def stack_from_autoencoders(autoencoder_params_list, softmax_params) -> dict:
    """The fine-tuning parameters from pre-trained pieces (UFLDL's ``stack`` cell array).

    autoencoder_params_list: sparse-autoencoder param dicts (keys W1, b1, W2,
        b2), the first trained on X, each next one on the previous one's
        features. Autoencoder k gives encoder k: W = its W1 (n_hidden, n_in),
        b = its b1 (n_hidden,). W2 and b2 (the decoders) are not used.
    softmax_params: dict with "W" (n_classes, n_hidden of the last
        autoencoder) and optionally "b" (n_classes,), e.g. from
        this repository's ``train_softmax`` on the last autoencoder's features.

    Returns {"stack": [{"W", "b"}, ...], "softmax": {"W"[, "b"]}}, made of
    copies (fine-tuning them leaves the pre-trained models as they were).
    Raises ValueError or TypeError naming the argument when a shape does not
    follow from the one before it or the dtypes differ.
    """
    if not isinstance(autoencoder_params_list, (list, tuple)) or not autoencoder_params_list:
        raise TypeError("autoencoder_params_list: expected a non-empty list of sparse-autoencoder "
                        f"param dicts, got {type(autoencoder_params_list).__name__}")
    stack = []
    for k, ae in enumerate(autoencoder_params_list):
        name = f"autoencoder_params_list[{k}]"
        if not isinstance(ae, dict) or "W1" not in ae or "b1" not in ae:
            raise TypeError(f"{name}: expected a dict with keys 'W1' and 'b1' (and W2, b2), "
                            f"got {type(ae).__name__}")
        stack.append({"W": np.array(ae["W1"], copy=True), "b": np.array(ae["b1"], copy=True)})
    if not isinstance(softmax_params, dict) or "W" not in softmax_params:
        raise TypeError("softmax_params: expected a dict with key 'W' (and optionally 'b'), "
                        f"got {type(softmax_params).__name__}")
    softmax = {name: np.array(softmax_params[name], copy=True)
               for name in ("W", "b") if name in softmax_params}
    params = {"stack": stack, "softmax": softmax}
    _check_params(params, names=_ae_names)
    return params


def init_stacked_params(sizes, n_classes, rng, dtype=np.float64, bias=True) -> dict:
    """Small random parameters, for tests and gradient checks.

    sizes: [s_1, s_2, ..., s_L], the input width then each encoder's width
        (at least two entries: one encoder); n_classes >= 2.
    rng: a ``numpy.random.Generator`` or an int seed.
    dtype: float32 or float64.   bias: include the softmax bias "b".

    Every W and b, encoders and softmax, is drawn uniformly from [-r, r] with
    r = sqrt(6 / (n_in + n_out + 1)), the range of UFLDL's
    initializeParameters. The biases are random too (UFLDL starts them at
    0) so that a gradient check exercises them.
    """
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        rng = np.random.default_rng(int(rng))
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng: expected a numpy.random.Generator or an int seed, got {rng!r}")
    if (not isinstance(sizes, (list, tuple)) or len(sizes) < 2
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1
                       for s in sizes)):
        raise ValueError(f"sizes: expected a list of at least 2 positive ints "
                         f"[n_visible, n_hidden_1, ...], got {sizes!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 2:
        raise ValueError(f"n_classes: expected an int >= 2, got {n_classes!r}")
    if np.dtype(dtype) not in _DTYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}")
    if not isinstance(bias, (bool, np.bool_)):
        raise TypeError(f"bias: expected True or False, got {bias!r}")

    def uniform(n_out, n_in, shape):
        r = math.sqrt(6.0 / (n_in + n_out + 1))
        return rng.uniform(-r, r, size=shape).astype(dtype)

    stack = [{"W": uniform(n_out, n_in, (n_out, n_in)), "b": uniform(n_out, n_in, (n_out,))}
             for n_in, n_out in zip(sizes[:-1], sizes[1:])]
    softmax = {"W": uniform(n_classes, sizes[-1], (n_classes, sizes[-1]))}
    if bias:
        softmax["b"] = uniform(n_classes, sizes[-1], (n_classes,))
    return {"stack": stack, "softmax": softmax}


# ---------------------------------------------------------------------------
# The forward pass, the cost and its gradient
# ---------------------------------------------------------------------------


def forward(params, X):
    """The activations of every layer and the class probabilities.

    params: see the module docstring.   X: (m, s_1), one example per row, finite.

    Returns (activations, P): activations the list [a^(1), a^(2), ..., a^(L)]
    with a^(1) = X (converted to the params' dtype) and a^(l) of shape
    (m, s_l); P (m, n_classes), the softmax of the scores, rows summing to 1:

        a^(l+1) = f(a^(l) @ W^(l).T + b^(l))            l = 1 .. L-1
        scores = a^(L) @ theta.T (+ b)                  (m, n_classes)
        P = exp(scores - logsumexp(scores, each row))   (m, n_classes)
    """
    params = _check_params(params)
    X = _check_X(X, params)
    a, log_P = _forward(params, X)
    return [a[l] for l in sorted(a)], np.exp(log_P)


def predict(params, X):
    """Predicted labels (m,) in 0 .. n_classes-1: argmax_j p_ij (the first on ties)."""
    params = _check_params(params)
    X = _check_X(X, params)
    _, log_P = _forward(params, X)
    return np.argmax(log_P, axis=1)


def cost_and_grad(params, X, y, *, lam=1e-4):
    """The fine-tuning cost J and its gradient for every parameter, all m rows at once.

    params: {"stack": [{"W": (s_{l+1}, s_l), "b": (s_{l+1},)}, ...],
             "softmax": {"W": (n_classes, s_L)[, "b": (n_classes,)]}},
            all float32 or all float64 (the computation's dtype).
    X:      (m, s_1), one example per row, finite.
    y:      (m,) integer labels in 0 .. n_classes-1.
    lam:    weight decay >= 0, on the softmax weights theta only (see below).

    Returns (cost, grads): cost a Python float, grads a dict with the nested
    structure, shapes and dtype of params. A bad argument raises ValueError
    or TypeError naming it.

    With f the sigmoid, Y the one-hot matrix of y (Y[i, j] = 1{y_i = j})
    and delta[l] = dJ/dz^(l) (which includes the 1/m; see the module
    docstring), in the code's layout:

        a[1] = X;  a[l+1] = f(a[l] @ W[l].T + b[l])                 (m, s_{l+1})
        scores = a[L] @ theta.T (+ b_softmax)                       (m, n_classes)
        log P = scores - logsumexp(scores, each row)                (m, n_classes)
        J = -(1/m) sum_i log P[i, y_i] + (lam/2) ||theta||_F^2
        delta_out = (P - Y) / m                                     (m, n_classes)
        dJ/dtheta = delta_out.T @ a[L] + lam * theta                (n_classes, s_L)
        dJ/db_softmax = delta_out summed over the rows              (n_classes,)
        delta[L] = (delta_out @ theta) * a[L] * (1 - a[L])          (m, s_L)
        delta[l] = (delta[l+1] @ W[l]) * a[l] * (1 - a[l])          l = L-1 .. 2
        dJ/dW[l] = delta[l+1].T @ a[l]                              (s_{l+1}, s_l)
        dJ/db[l] = delta[l+1] summed over the rows                  (s_{l+1},)

    Only theta is weight-decayed, as in most public solutions of UFLDL's
    stackedAECost.m (dwalling/ufldl-hacking: "% no weight decay on stack");
    UFLDL's own text and starter code do not say, and a few solutions and
    UFLDL's later multilayer exercise decay every layer's W (module
    docstring; docs/stacked.md, "7. What is weight-decayed, and why").
    """
    params, X, y, lam = _check_call(params, X, y, lam)
    stack, softmax = params["stack"], params["softmax"]
    L = len(stack) + 1                                     # input + K encoders; a[L]: the features
    W = {l: stack[l - 1]["W"] for l in range(1, L)}        # W[l]: (s_{l+1}, s_l), the notes' W^(l)
    b = {l: stack[l - 1]["b"] for l in range(1, L)}        # b[l]: (s_{l+1},)
    theta = softmax["W"]                                   # (n_classes, s_L): UFLDL's softmaxTheta
    n_classes = theta.shape[0]
    m = X.shape[0]

    # Forward pass: every encoder in order, then the softmax.
    a = {1: X}                                             # a[l]: (m, s_l); a[1] = X
    for l in range(1, L):
        a[l + 1] = sigmoid(a[l] @ W[l].T + b[l])           # (m, s_{l+1}); a^(l+1) = f(z^(l+1))
    scores = a[L] @ theta.T                                # (m, n_classes); theta_j^T a^(L)
    if "b" in softmax:
        scores = scores + softmax["b"]                     # (m, n_classes)
    shifted = scores - scores.max(axis=1, keepdims=True)   # (m, n_classes); every row's max is 0
    log_P = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))   # (m, n_classes)
    P = np.exp(log_P)                                      # (m, n_classes); rows sum to 1
    Y = np.eye(n_classes, dtype=X.dtype)[y]                # (m, n_classes); Y[i, j] = 1{y_i = j}

    # The cost J: cross-entropy + weight decay on theta alone.
    cross_entropy = -np.sum(Y * log_P) / m
    weight_decay = (lam / 2) * np.sum(theta ** 2)
    cost = cross_entropy + weight_decay

    # Backward pass: the softmax's error, then every sigmoid layer down to a[2].
    delta_out = (P - Y) / m                                # (m, n_classes); dJ/dscores
    grad_theta = delta_out.T @ a[L] + lam * theta          # (n_classes, s_L)
    grad_b_softmax = delta_out.sum(axis=0)                 # (n_classes,)
    delta = {L: (delta_out @ theta) * a[L] * (1 - a[L])}   # (m, s_L); f'(z^(L)) = a^(L) (1 - a^(L))
    for l in range(L - 1, 1, -1):
        delta[l] = (delta[l + 1] @ W[l]) * a[l] * (1 - a[l])   # (m, s_l)

    # The gradient of every encoder: sums over the examples (delta has the 1/m), no decay.
    grad_W = {l: delta[l + 1].T @ a[l] for l in range(1, L)}   # (s_{l+1}, s_l)
    grad_b = {l: delta[l + 1].sum(axis=0) for l in range(1, L)}   # (s_{l+1},)

    grads_softmax = {"W": grad_theta}
    if "b" in softmax:
        grads_softmax["b"] = grad_b_softmax
    grads = {"stack": [{"W": grad_W[l], "b": grad_b[l]} for l in range(1, L)],
             "softmax": grads_softmax}
    return float(cost), grads


def _forward(params, X):
    """({l: a^(l)}, log P): ``cost_and_grad``'s forward pass, for ``forward`` and ``predict``."""
    stack, softmax = params["stack"], params["softmax"]
    a = {1: X}                                             # a[l]: (m, s_l)
    for l in range(1, len(stack) + 1):
        a[l + 1] = sigmoid(a[l] @ stack[l - 1]["W"].T + stack[l - 1]["b"])   # (m, s_{l+1})
    scores = a[len(stack) + 1] @ softmax["W"].T            # (m, n_classes)
    if "b" in softmax:
        scores = scores + softmax["b"]
    shifted = scores - scores.max(axis=1, keepdims=True)   # (m, n_classes)
    return a, shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


# ---------------------------------------------------------------------------
# Packing: one vector theta for L-BFGS and the gradient checker
# ---------------------------------------------------------------------------

# The packed order is UFLDL's stackedAETheta = [softmaxTheta(:); stack2params(stack)]:
# the softmax W, then the softmax b if there is one, then for each encoder in
# order its W then its b. Every matrix is flattened row-major (C order; MATLAB's
# (:) is column-major, so the numbers are not in UFLDL's order within a block).


def pack(params) -> np.ndarray:
    """Flatten params into one new 1-D vector of their dtype, in the order

        [softmax W, softmax b (if present), stack[0] W, stack[0] b, stack[1] W, stack[1] b, ...]

    each matrix row-major. Grads (same structure) pack the same way.
    """
    params = _check_params(params, finite=False)
    softmax = params["softmax"]
    blocks = [softmax[name] for name in ("W", "b") if name in softmax]
    for layer in params["stack"]:
        blocks += [layer["W"], layer["b"]]
    return np.concatenate([np.ravel(block) for block in blocks])


def unpack(theta, sizes, n_classes, bias=True) -> dict:
    """Inverse of ``pack``: views into ``theta``, not copies.

    theta: 1-D float32 or float64 array of the packed length.
    sizes: [s_1, ..., s_L] (input width, then each encoder's width);
    n_classes: the softmax's classes; bias: whether the softmax has "b".
    Writing into a returned array writes into ``theta``.
    """
    if (not isinstance(sizes, (list, tuple)) or len(sizes) < 2
            or not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 1
                       for s in sizes)):
        raise ValueError(f"sizes: expected a list of at least 2 positive ints, got {sizes!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, numbers.Integral) or n_classes < 2:
        raise ValueError(f"n_classes: expected an int >= 2, got {n_classes!r}")
    shapes = [(n_classes, sizes[-1])] + ([(n_classes,)] if bias else [])
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        shapes += [(n_out, n_in), (n_out,)]
    expected = sum(math.prod(shape) for shape in shapes)
    if (not isinstance(theta, np.ndarray) or theta.ndim != 1 or theta.size != expected
            or theta.dtype not in _DTYPES):
        got = getattr(theta, "shape", type(theta).__name__)
        raise ValueError(f"theta: expected a 1-D float32 or float64 array of length {expected} "
                         f"(sizes={list(sizes)}, n_classes={n_classes}, bias={bias}), got {got}")
    views, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        views.append(theta[start:start + size].reshape(shape))
        start += size
    softmax = {"W": views.pop(0)}
    if bias:
        softmax["b"] = views.pop(0)
    stack = [{"W": views[2 * k], "b": views[2 * k + 1]} for k in range(len(sizes) - 1)]
    return {"stack": stack, "softmax": softmax}


# ---------------------------------------------------------------------------
# Validation: clear errors at the entry points, kept below the maths
# ---------------------------------------------------------------------------

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _params_names(k, name):
    return f"params['stack'][{k}]['{name}']" if k is not None else f"params['softmax']['{name}']"


def _ae_names(k, name):
    if k is None:
        return f"softmax_params['{name}']"
    return f"autoencoder_params_list[{k}]['{'W1' if name == 'W' else 'b1'}']"


def _check_params(params, *, finite=True, names=_params_names):
    """params as described in the module docstring, or raise naming the offending array."""
    if not isinstance(params, dict) or set(params) != {"stack", "softmax"}:
        raise TypeError("params: expected a dict with the keys 'stack' and 'softmax', got "
                        + (f"keys {sorted(params)}" if isinstance(params, dict)
                           else type(params).__name__))
    stack, softmax = params["stack"], params["softmax"]
    if not isinstance(stack, (list, tuple)) or not stack:
        raise TypeError("params['stack']: expected a non-empty list of {'W', 'b'} dicts, "
                        f"got {stack!r:.60}")
    if not isinstance(softmax, dict) or "W" not in softmax or not set(softmax) <= {"W", "b"}:
        raise TypeError("params['softmax']: expected a dict with key 'W' and optionally 'b', "
                        f"got {softmax!r:.60}")
    arrays = []
    for k, layer in enumerate(stack):
        if not isinstance(layer, dict) or set(layer) != {"W", "b"}:
            raise TypeError(f"params['stack'][{k}]: expected a dict with the keys 'W' and 'b', "
                            f"got {layer!r:.60}")
        arrays += [(k, "W", layer["W"]), (k, "b", layer["b"])]
    arrays += [(None, name, softmax[name]) for name in ("W", "b") if name in softmax]

    dtype = None
    for k, name, value in arrays:
        label = names(k, name)
        if not isinstance(value, np.ndarray) or value.dtype not in _DTYPES:
            got = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
            raise TypeError(f"{label}: expected a float32 or float64 numpy array, got {got}")
        dtype = value.dtype if dtype is None else dtype
        if value.dtype != dtype:
            raise TypeError(f"{label}: expected {dtype} like the first weight matrix "
                            f"(all arrays one dtype), got {value.dtype}")
        if finite and not np.isfinite(value).all():
            raise ValueError(f"{label}: expected finite values, found NaN or infinity")

    width = None                                           # s_l of the layer feeding this one
    for k, layer in enumerate(stack):
        W, b = layer["W"], layer["b"]
        if W.ndim != 2 or (width is not None and W.shape[1] != width):
            expected = "a 2-D array" if width is None else f"shape (s, {width}), {width} inputs"
            raise ValueError(f"{names(k, 'W')}: expected {expected}, got shape {W.shape}")
        if b.shape != (W.shape[0],):
            raise ValueError(f"{names(k, 'b')}: expected shape ({W.shape[0]},), one bias per row "
                             f"of {names(k, 'W')}, got shape {b.shape}")
        width = W.shape[0]
    theta = softmax["W"]
    if theta.ndim != 2 or theta.shape[1] != width or theta.shape[0] < 2:
        raise ValueError(f"{names(None, 'W')}: expected shape (n_classes >= 2, {width}), "
                         f"{width} the width of the last encoder, got shape {theta.shape}")
    if "b" in softmax and softmax["b"].shape != (theta.shape[0],):
        raise ValueError(f"{names(None, 'b')}: expected shape ({theta.shape[0]},), one bias per "
                         f"class, got shape {softmax['b'].shape}")
    return params


def _check_X(X, params):
    """X as a finite 2-D array of the params' dtype with s_1 columns, or raise."""
    n_visible = params["stack"][0]["W"].shape[1]
    dtype = params["stack"][0]["W"].dtype
    if isinstance(X, np.ndarray):
        array = X
    else:
        try:
            array = np.asarray(X)
        except Exception as exc:  # ragged lists and other oddities
            raise TypeError(f"X: expected a 2-D array of numbers, got {type(X).__name__} ({exc})")
    if array.dtype.kind not in "iuf":
        raise TypeError(f"X: expected a 2-D array of real numbers, got dtype {array.dtype}")
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != n_visible:
        raise ValueError(f"X: expected shape (m >= 1, {n_visible}), one example of {n_visible} "
                         f"inputs per row, got shape {array.shape}")
    array = array.astype(dtype, copy=False)
    if not np.isfinite(array).all():
        raise ValueError("X: expected finite values, found NaN or infinity "
                         f"(after conversion to {dtype})")
    return array


def _check_call(params, X, y, lam):
    """The checked (params, X, y, lam) of ``cost_and_grad``, or raise naming the argument."""
    params = _check_params(params)
    X = _check_X(X, params)
    n_classes = params["softmax"]["W"].shape[0]
    labels = np.asarray(y)
    if labels.dtype.kind not in "iu":
        raise TypeError(f"y: expected integer labels in 0 .. {n_classes - 1}, got dtype "
                        f"{labels.dtype}" + (" (convert with y.astype(int))"
                                            if labels.dtype.kind == "f" else ""))
    if labels.shape != (X.shape[0],):
        raise ValueError(f"y: expected shape ({X.shape[0]},), one label per row of X, "
                         f"got shape {labels.shape}")
    if labels.min() < 0 or labels.max() >= n_classes:
        raise ValueError(f"y: expected labels in 0 .. {n_classes - 1} (n_classes = {n_classes}), "
                         f"got values from {labels.min()} to {labels.max()}")
    if isinstance(lam, (bool, np.bool_)) or not isinstance(lam, numbers.Real):
        raise TypeError(f"lam: expected a real number >= 0, got {lam!r}")
    if not math.isfinite(lam) or lam < 0:
        raise ValueError(f"lam: expected a finite weight decay >= 0, got {lam!r}")
    return params, X, labels.astype(np.intp, copy=False), float(lam)


# ---------------------------------------------------------------------------
# The reference: the notes' algorithm, one example at a time
# ---------------------------------------------------------------------------


def loop_cost_and_grad(params, X, y, *, lam=1e-4):
    """J and its gradient by the notes' per-example backpropagation, with Python loops.

    Same arguments and return structure as ``cost_and_grad``, but computed
    in float64 (and returned as float64) whatever the params' dtype: it is
    the reference the tests hold ``cost_and_grad`` to. Each example x^(i)
    (row i of X) is a column; the notes' delta is per example (no 1/m), the
    sums over the examples are accumulated and divided by m at the end:

        for each example x, y:
            a^(1) = x;  a^(l+1) = f(W^(l) a^(l) + b^(l))         columns (s_{l+1}, 1)
            p = softmax(theta a^(L) + b)                         column (n_classes, 1)
            cost += -log p_y
            delta_out = p - e_y            (e_y: 1 in row y, 0 elsewhere)
            delta^(L) = (theta^T delta_out) .* a^(L) .* (1 - a^(L))
            delta^(l) = ((W^(l))^T delta^(l+1)) .* a^(l) .* (1 - a^(l))     l = L-1 .. 2
            Delta theta += delta_out (a^(L))^T;   Delta b += delta_out
            Delta W^(l) += delta^(l+1) (a^(l))^T;   Delta b^(l) += delta^(l+1)
        J = cost / m + (lam/2) ||theta||^2
        grad theta = Delta theta / m + lam theta;  every other gradient = Delta / m
    """
    params, X, y, lam = _check_call(params, X, y, lam)
    stack, softmax = params["stack"], params["softmax"]
    L = len(stack) + 1
    W = {l: stack[l - 1]["W"].astype(np.float64) for l in range(1, L)}
    b = {l: stack[l - 1]["b"].astype(np.float64).reshape(-1, 1) for l in range(1, L)}   # columns
    theta = softmax["W"].astype(np.float64)
    n_classes = theta.shape[0]
    b_out = (softmax["b"].astype(np.float64).reshape(-1, 1) if "b" in softmax
             else np.zeros((n_classes, 1)))
    m = X.shape[0]

    def f(z):
        with np.errstate(over="ignore"):                   # exp(-z) = inf for z < -709: f = 0
            return 1.0 / (1.0 + np.exp(-z))

    cost = 0.0
    Delta_W = {l: np.zeros_like(W[l]) for l in range(1, L)}
    Delta_b = {l: np.zeros_like(b[l]) for l in range(1, L)}
    Delta_theta = np.zeros_like(theta)
    Delta_b_out = np.zeros_like(b_out)
    for i in range(m):
        x = X[i].astype(np.float64).reshape(-1, 1)         # the column x^(i)
        a = {1: x}
        for l in range(1, L):
            a[l + 1] = f(W[l] @ a[l] + b[l])               # (s_{l+1}, 1)
        scores = theta @ a[L] + b_out                      # (n_classes, 1)
        largest = float(scores.max())
        exps = np.exp(scores - largest)                    # (n_classes, 1)
        total = float(exps.sum())
        p = exps / total                                   # (n_classes, 1)
        label = int(y[i])
        cost += -(float(scores[label, 0]) - largest - math.log(total))   # -log p_y

        e = np.zeros((n_classes, 1))
        e[label, 0] = 1.0                                  # the column 1{y = j}
        delta_out = p - e                                  # (n_classes, 1)
        delta = {L: (theta.T @ delta_out) * a[L] * (1 - a[L])}       # (s_L, 1)
        for l in range(L - 1, 1, -1):
            delta[l] = (W[l].T @ delta[l + 1]) * a[l] * (1 - a[l])   # (s_l, 1)

        Delta_theta += delta_out @ a[L].T
        Delta_b_out += delta_out
        for l in range(1, L):
            Delta_W[l] += delta[l + 1] @ a[l].T
            Delta_b[l] += delta[l + 1]

    cost = cost / m + (lam / 2) * float(np.sum(theta ** 2))
    grads_softmax = {"W": Delta_theta / m + lam * theta}
    if "b" in softmax:
        grads_softmax["b"] = (Delta_b_out / m).ravel()
    grads = {"stack": [{"W": Delta_W[l] / m, "b": (Delta_b[l] / m).ravel()} for l in range(1, L)],
             "softmax": grads_softmax}
    return float(cost), grads
