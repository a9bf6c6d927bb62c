"""Input validation for the model's entry points: clear errors, raised early.

The model (``sparse_autoencoder.py``) and its tuned twin (``fast.py``) call
these before any arithmetic, so that bad input never reaches the math as a
NumPy traceback or a silent NaN. Every error names the argument and what was
expected.

    check_params(params)        the dict W1, b1, W2, b2: keys, shapes, one float dtype, finite
    check_X(X, params, decoder) X (m, n_visible), finite, in [0, 1] for the sigmoid decoder
    check_call(...)             both, and penalty, decoder, rho, beta, lam, as cost_and_grad takes them
    check_hyperparameters(...)  0 < rho < 1, beta >= 0, lam >= 0
    check_magnitudes(...)       values of cost_and_grad that could overflow: refused, the culprit named
    check_relu_l1_call, check_topk_call, check_modern_magnitudes, check_modern_X,
    check_decoder, check_decoder_grad   the same for the modern models (modern_sae.py)
    check_count, check_choice, check_dtype, check_matrix, as_generator   the small ones
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

import numpy as np

from saelab.checks.memory import check_memory

PARAM_NAMES = ("W1", "b1", "W2", "b2")
PENALTIES = ("kl", "l1", "none")
DECODERS = ("sigmoid", "linear")
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def param_shapes(n_visible: int, n_hidden: int) -> dict:
    """Shapes of the four parameter arrays, in the notes' layout."""
    return {
        "W1": (n_hidden, n_visible),
        "b1": (n_hidden,),
        "W2": (n_visible, n_hidden),
        "b2": (n_visible,),
    }


def check_call(params, X, penalty, rho, beta, lam, decoder):
    """Check every argument of cost_and_grad; return (params, X, rho, beta, lam).

    X comes back 2-D in the params' dtype; rho, beta and lam come back as
    Python floats (which keep float32 arithmetic float32).
    """
    params = check_params(params)
    check_choice("penalty", penalty, PENALTIES)
    check_choice("decoder", decoder, DECODERS)
    check_hyperparameters(rho=rho, beta=beta, lam=lam)
    X, x_max = _checked_matrix("X", X, params["W1"].shape[1], params["W1"].dtype, decoder)
    smallest = np.finfo(X.dtype).tiny
    if rho < smallest:
        raise ValueError(f"rho: expected at least {smallest!r} (the smallest normal "
                         f"{X.dtype} number), got {rho!r}")
    check_magnitudes(params, X.shape[0], x_max, penalty=penalty, beta=beta, lam=lam, decoder=decoder)
    return params, X, float(rho), float(beta), float(lam)


def check_magnitudes(params, m, x_max, *, penalty, beta, lam, decoder):
    """Raise naming the culprit if a value of cost_and_grad could overflow the params' dtype.

    Finite arguments can still be too large to compute with: lam = 1e308,
    weights of 1e200, X of 1e300 for the linear decoder. This bounds every
    intermediate of the forward and backward pass from above, cheaply (one
    pass over the params; x_max is the largest |X|, which the check of X
    found already) and conservatively, and refuses the call, naming the
    argument to blame and the value that gave it away, when a bound comes
    within a factor 16 of the dtype's largest number. Inside the model's
    domain (tests/test_reliability.py) the bounds are many orders of
    magnitude away from it.
    """
    dtype = params["W1"].dtype
    largest = float(np.finfo(dtype).max)
    limit = largest / 16
    eps = float(np.finfo(dtype).eps)
    n_hidden, n_visible = params["W1"].shape
    norm = _param_norms(params, limit)

    def refuse(name, what, value):
        reach = f"would reach about {value:.3g}" if math.isfinite(value) else "would overflow"
        hint = "; standardize X" if name == "X" else ""
        raise ValueError(f"{name}: {what} {reach}, beyond {dtype}'s largest number "
                         f"{largest:.4g}{hint}")

    decay = lam * (norm["W1"] * norm["W1"] + norm["W2"] * norm["W2"]) / 2
    if not lam < limit or not decay < limit:
        refuse("lam", f"{lam!r} is too large for these weights: the weight decay "
               f"(lam / 2) * sum(W**2)", decay)
    per_unit = math.log(1 / eps) + 1 if penalty == "kl" else 1.0
    if penalty != "none" and not beta * (n_hidden * per_unit + 2 / eps) < limit:
        refuse("beta", f"{beta!r} is too large: the sparsity penalty and its gradient "
               f"beta * (rho / rho_hat + (1 - rho) / (1 - rho_hat))", beta * 2 / eps)
    x_blamed = "X" if x_max > 1 else None
    z2 = x_max * math.sqrt(n_visible) * norm["W1"] + norm["b1"]
    if not z2 < limit:
        refuse(x_blamed if x_blamed and x_max > norm["W1"] else "params['W1']",
               f"with |X| up to {x_max:.3g} and |W1| {norm['W1']:.3g}, z2 = X @ W1.T + b1", z2)
    z3 = math.sqrt(n_hidden) * norm["W2"] + norm["b2"]       # a2 is in [0, 1]
    if not z3 < limit:
        refuse("params['W2']", f"with |W2| {norm['W2']:.3g} and |b2| {norm['b2']:.3g}, "
               f"z3 = a2 @ W2.T + b2", z3)
    residual = (z3 if decoder == "linear" else 1.0) + x_max  # |a3 - X|, and |delta3|
    culprit = "X" if x_blamed and x_max >= residual / 2 else "params['W2']"
    worst = max(residual * residual * m * n_visible,                # sum of (a3 - X)**2
                residual * math.sqrt(n_visible) * norm["W2"] * m * x_max,   # delta2.T @ X
                residual * m)                                # delta3.T @ a2, sums of delta3
    if not worst < limit:
        refuse(culprit, f"with |X| up to {x_max:.3g} and |W2| {norm['W2']:.3g}, the reconstruction "
               f"error and the gradient", worst)
    delta2 = (residual * math.sqrt(n_visible) * norm["W2"] + (beta * 2 / eps if penalty != "none" else 0)) / 4
    if not delta2 * m * max(x_max, 1.0) < limit:
        refuse(x_blamed or "params['W2']", f"with |X| up to {x_max:.3g}, the gradient delta2.T @ X",
               delta2 * m * max(x_max, 1.0))


def _param_norms(params, limit):
    """{name: ||params[name]||} (Frobenius), refusing naming the array if its squares sum to ``limit`` or more."""
    dtype = params["W1"].dtype
    norm = {}
    for name in PARAM_NAMES:
        flat = params[name].ravel()
        with np.errstate(all="ignore"):
            squares = float(np.dot(flat, flat))             # in the params' dtype, as the model sums
        if not squares < limit:
            raise ValueError(
                f"params['{name}']: values up to {float(np.abs(flat).max())!r} are too large for "
                f"{dtype}: their squares sum beyond its largest number {float(np.finfo(dtype).max):.4g}")
        norm[name] = math.sqrt(squares)
    return norm


def check_params(params, *, finite=True) -> dict:
    """Return params if it is a well-formed parameter dict, else raise.

    Expected: a dict with exactly the keys W1, b1, W2, b2; 2-D W1
    (n_hidden, n_visible), W2 (n_visible, n_hidden), 1-D b1 (n_hidden,),
    b2 (n_visible,); all of one dtype, float32 or float64; all finite
    (unless ``finite=False``: ``pack`` also packs a diverged run's params).
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
    plain = {name: plain_array(f"params['{name}']", params[name]) for name in PARAM_NAMES}
    if any(plain[name] is not params[name] for name in PARAM_NAMES):
        params = plain                    # subclasses (matrix, masked, memmap) as plain arrays
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
        if finite and not all_finite(params[name]):
            raise ValueError(
                f"params['{name}']: expected finite values, found NaN or infinity "
                f"(parameters from a run that diverged?)"
            )
    return params


def all_finite(A):
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
    X, x_max = _checked_matrix("X", X, n_visible, params["W1"].dtype, decoder)
    check_product("X", x_max, params, "W1", "b1", "z2 = X @ W1.T + b1")
    return X


def check_A2(A2, params):
    """Return hidden activations A2 (m, n_hidden) checked as by check_matrix, in the params'
    dtype, or raise naming A2 (or W2) when z3 = A2 @ W2.T + b2 could overflow."""
    A2, a_max = _checked_matrix("A2", A2, params["W1"].shape[0], params["W1"].dtype)
    check_product("A2", a_max, params, "W2", "b2", "z3 = A2 @ W2.T + b2")
    return A2


def check_product(name, a_max, params, weights, bias, what):
    """Raise naming ``name`` or the weights if |A @ W.T + b| could overflow the params' dtype."""
    dtype = params[weights].dtype
    largest = float(np.finfo(dtype).max)
    with np.errstate(all="ignore"):
        norms = [float(np.sqrt(np.dot(params[k].ravel(), params[k].ravel()))) for k in (weights, bias)]
    bound = a_max * math.sqrt(params[weights].shape[1]) * norms[0] + norms[1]
    if not bound < largest / 16:
        culprit = name if a_max > 1 and a_max > norms[0] else f"params['{weights}']"
        reach = f"would reach about {bound:.3g}" if math.isfinite(bound) else "would overflow"
        raise ValueError(f"{culprit}: with |{name}| up to {a_max:.3g} and |{weights}| {norms[0]:.3g}, "
                         f"{what} {reach}, beyond {dtype}'s largest number {largest:.4g}")


def plain_array(name, A):
    """A as a plain ``numpy.ndarray`` if it is an ndarray subclass; other values unchanged.

    The rule for array-likes, everywhere in the API: a subclass of ndarray
    (``numpy.matrix``, ``numpy.memmap``, ...) is used as the plain array it
    holds, with NumPy's usual semantics (a 2-D matrix is a 2-D array; a
    matrix for a 1-D argument such as b1 has shape (1, n) and is refused for
    its shape). A ``numpy.ma`` masked array with nothing masked is used as
    its data; one with any value masked is refused naming ``name``: the
    model has no notion of a missing value, and the data under the mask
    must never be trained on silently.
    """
    if isinstance(A, np.ma.MaskedArray):
        masked = int(np.ma.count_masked(A))
        if masked:
            raise ValueError(
                f"{name}: a masked array with {masked} masked value{'s' if masked > 1 else ''}; "
                f"fill them ({name}.filled(value))"
                + ("" if name.startswith("params") else " or drop those rows (numpy.ma.compress_rows)")
                + " first")
        return np.asarray(np.ma.getdata(A))
    if isinstance(A, np.ndarray) and type(A) is not np.ndarray:
        return np.asarray(A)
    return A


def check_matrix(name, A, width, dtype, decoder=None):
    """Return A as a 2-D (m, width) array of ``dtype``, or raise naming ``name``.

    Checks as ``check_X`` does: real numbers, m >= 1, finite, and in [0, 1]
    when ``decoder == "sigmoid"``.
    """
    return _checked_matrix(name, A, width, dtype, decoder)[0]


def _as_ndarray(name, A):
    """A as a plain ndarray (see ``plain_array``), or a TypeError naming ``name``."""
    A = plain_array(name, A)
    if not isinstance(A, np.ndarray):
        try:
            A = np.asarray(A)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{name}: expected a 2-D array of numbers, got {type(A).__name__}") from exc
    return A


def check_seed(name, seed):
    """Return seed as an int if it is an integer >= 0, else raise naming ``name``."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name}: expected a non-negative integer, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {seed!r}")
    return int(seed)


def _checked_matrix(name, A, width, dtype, decoder=None):
    """check_matrix, and the largest |value| of A (1.0 when only known to be in [0, 1])."""
    A = _as_ndarray(name, A)
    if A.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected an array of real numbers, got dtype {A.dtype}")
    if A.ndim != 2:
        hint = " (use X.reshape(1, -1) for a single example)" if A.ndim == 1 else ""
        raise ValueError(f"{name}: expected a 2-D array (m, {width}), got shape {A.shape}{hint}")
    if A.shape[1] != width or A.shape[0] < 1:
        raise ValueError(f"{name}: expected shape (m, {width}) with m >= 1, got {A.shape}")
    original = A
    with np.errstate(over="ignore", invalid="ignore"):   # too large for dtype: refused below
        A = A.astype(dtype, copy=False)
    if decoder == "sigmoid" and in_unit_interval(A):
        return A, 1.0                     # one pass showed every value finite and in [0, 1]
    lo, hi = A.min(), A.max()             # NaN propagates into min and max
    if not (np.isfinite(lo) and np.isfinite(hi)):
        if original is not A and original.dtype.kind == "f" and all_finite(original):
            largest = float(np.abs(original).max())
            raise ValueError(f"{name}: values up to {largest!r} do not fit {np.dtype(dtype)} "
                             f"(the params' dtype), whose largest number is {float(np.finfo(dtype).max):.4g}")
        raise ValueError(f"{name}: expected finite values, found NaN or infinity")
    if decoder == "sigmoid" and (lo < 0 or hi > 1):
        raise ValueError(
            f"{name}: the sigmoid decoder needs values in [0, 1], got values in "
            f"[{_shown(lo)}, {_shown(hi)}]; {_rescale_hint(lo, hi)}"
        )
    return A, max(abs(float(lo)), abs(float(hi)))


def _shown(value):
    """value with 4 significant digits, or all of them if 4 would hide that it is outside [0, 1]
    (1 + 2**-52 is shown as 1.0000000000000002, not as 1)."""
    value = float(value)
    text = f"{value:.4g}"
    return text if (0 <= float(text) <= 1) == (0 <= value <= 1) else repr(value)


def in_unit_interval(A):
    """True if every value of the float32/float64 array A is in [+0, 1]; one pass.

    A cheap first test for check_X, which runs on every cost evaluation: one
    integer max instead of a float min and a float max. It reads each
    float's bits as an unsigned integer of the same width. Floats from +0 to
    1 have the bit patterns from 0 up to that of 1.0, in order. Everything
    else reads larger: negative numbers have the sign bit (the top bit) set,
    and values above 1, infinity and NaN have larger exponent bits. -0.0
    (the sign bit alone) also reads larger, so a False only means "look
    closer", which check_matrix does with min and max.
    """
    unsigned = np.dtype(f"u{A.dtype.itemsize}")
    one = np.array(1, dtype=A.dtype).view(unsigned)
    return bool(A.view(unsigned).max() <= one)


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


def check_choice(name, value, allowed):
    """Return value if it is one of ``allowed``, else raise naming ``name``."""
    if value not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value


def check_init(n_visible, n_hidden, rng, dtype):
    """Check init_params' arguments; return (n_visible, n_hidden, Generator, np.dtype).

    Refuses sizes whose weights cannot fit in memory, before anything is
    allocated, naming the larger of the two sizes.
    """
    n_visible = check_count("n_visible", n_visible)
    n_hidden = check_count("n_hidden", n_hidden)
    dtype = check_dtype("dtype", dtype)
    rng = as_generator(rng)
    check_memory("n_hidden" if n_hidden >= n_visible else "n_visible",
                 2 * n_visible * n_hidden * (8 + dtype.itemsize),          # float64 draws, then dtype
                 f"init_params({n_visible}, {n_hidden}): the weights")
    return n_visible, n_hidden, rng, dtype


def check_count(name, value):
    """Return value as an int if it is an integer >= 1, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive integer (>= 1), got {value!r}")
    return int(value)


def check_dtype(name, dtype):
    """Return np.dtype(dtype) if it is float32 or float64, else raise naming ``name``."""
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"{name}: expected float32 or float64, got {dtype!r}") from exc
    if dt not in DTYPES:
        raise TypeError(f"{name}: expected float32 or float64, got {dt}")
    return dt


def as_generator(rng) -> np.random.Generator:
    """A ``numpy.random.Generator`` from a Generator, an int seed or None."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"rng: expected a seed >= 0, got {rng!r}")
        return np.random.default_rng(int(rng))
    raise TypeError(
        f"rng: expected a numpy.random.Generator, an int seed or None, got {rng!r}"
    )


# ---------------------------------------------------------------------------
# The modern models (modern_sae.py): ReLU + L1 and TopK
# ---------------------------------------------------------------------------


def check_nonnegative(name, value):
    """Return value as a Python float if it is a finite real number >= 0, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not _finite_real(value):
        raise TypeError(f"{name}: expected a finite real number, got {value!r}")
    if value < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
    return float(value)


def check_positive_finite(name, value):
    """Return value as a Python float if it is a finite real number > 0, else raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not _finite_real(value):
        raise TypeError(f"{name}: expected a finite real number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {value!r}")
    return float(value)


def check_tile_shape(tile_shape, width, what):
    """(h, w) as ints: two integers >= 1 whose product is ``width``, the columns of ``what``.

    Floats (even 8.0), booleans, negative or zero sides and other lengths are
    refused with a ValueError or TypeError naming tile_shape.
    """
    if isinstance(tile_shape, (str, bytes)) or not hasattr(tile_shape, "__len__") \
            or len(tile_shape) != 2:
        raise TypeError(f"tile_shape: expected (height, width), two integers, got {tile_shape!r}")
    if any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in tile_shape):
        raise TypeError(f"tile_shape: expected (height, width), two integers, got {tile_shape!r}")
    h, w = (int(v) for v in tile_shape)
    if h < 1 or w < 1:
        raise ValueError(f"tile_shape: expected a height and a width >= 1, got {tile_shape!r}")
    if h * w != width:
        raise ValueError(f"tile_shape: {tile_shape!r} has {h * w} pixels, but {what} has {width} "
                         f"columns")
    return h, w


def check_output_path(name, path):
    """Return ``path`` as a Path if it can name a file to write, else raise naming ``name``.

    A str or os.PathLike, not empty, without NUL, not an existing folder. A
    missing parent folder is fine: the project's writers create it, as the
    scripts' --out-dir does (``saelab.files.atomic.atomic_write``).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: expected a file path (str or os.PathLike), got "
                        f"{type(path).__name__}")
    text = os.fspath(path)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name}: expected a file path, got {path!r}")
    if "\0" in text:
        raise ValueError(f"{name}: a file path cannot contain a NUL character, got {path!r}")
    if os.path.isdir(text):
        raise ValueError(f"{name}: {text} is a folder, expected a file path")
    return Path(text)


def check_k(name, value, n_hidden):
    """Return value as an int if it is an integer with 1 <= value <= n_hidden, else raise."""
    value = check_count(name, value)
    if value > n_hidden:
        raise ValueError(f"{name}: expected at most n_hidden = {n_hidden} latents, got {value!r}")
    return value


def check_dead(dead, n_hidden):
    """Return ``dead`` as a plain bool array (n_hidden,), or None; else raise naming it."""
    if dead is None:
        return None
    dead = plain_array("dead", dead)
    if not isinstance(dead, np.ndarray) or dead.dtype != np.bool_:
        raise TypeError(f"dead: expected a bool numpy array (n_hidden,) = ({n_hidden},), "
                        f"got {getattr(dead, 'dtype', type(dead).__name__)}")
    if dead.shape != (n_hidden,):
        raise ValueError(f"dead: expected shape ({n_hidden},), one flag per latent, got {dead.shape}")
    return dead


def check_mask(name, mask, shape, per_row=None):
    """Return ``mask`` as a plain bool array of ``shape``, or None; else raise naming it.

    per_row: if given, every row must hold exactly this many True values
    (a frozen TopK selection holds k).
    """
    if mask is None:
        return None
    mask = plain_array(name, mask)
    if not isinstance(mask, np.ndarray) or mask.dtype != np.bool_:
        raise TypeError(f"{name}: expected a bool numpy array of shape {shape}, "
                        f"got {getattr(mask, 'dtype', type(mask).__name__)}")
    if mask.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)} (m, n_hidden), got {mask.shape}")
    if per_row is not None:
        counts = mask.sum(axis=1)
        if np.any(counts != per_row):
            row = int(np.flatnonzero(counts != per_row)[0])
            raise ValueError(f"{name}: expected {per_row} True values in every row, "
                             f"row {row} has {int(counts[row])}")
    return mask


def check_relu_l1_call(params, X, l1, lam):
    """Check the arguments of modern_sae.relu_l1_cost_and_grad; return (params, X, l1, lam).

    X: any finite values (the decoder is linear), (m, n_visible), converted to
    the params' dtype; l1 and lam: finite reals >= 0, returned as Python floats.
    """
    params = check_params(params)
    X, x_max = _checked_matrix("X", X, params["W1"].shape[1], params["W1"].dtype, "linear")
    l1, lam = check_nonnegative("l1", l1), check_nonnegative("lam", lam)
    check_modern_magnitudes(params, X.shape[0], x_max, l1=l1, lam=lam)
    return params, X, l1, lam


def check_topk_call(params, X, k, aux_k, alpha, dead, lam, mask=None, aux_mask=None,
                    aux_target=None, aux_scale=None):
    """Check the arguments of modern_sae.topk_cost_and_grad.

    Returns (params, X, k, aux_k, alpha, dead, lam, aux_scale, mask, aux_mask, aux_target,
    spread_floor):
    k an int in [1, n_hidden]; aux_k None or an int in [1, n_hidden], and then
    m >= 2 (AuxK divides by the spread of the residuals over the batch);
    alpha, lam Python floats >= 0; aux_scale None (computed from X by the
    caller) or a Python float >= 0; dead None or bool (n_hidden,); mask None or
    bool (m, n_hidden) with k True per row; aux_mask None or bool (m, n_hidden)
    True only on dead latents; aux_target None or (m, n_visible) finite;
    spread_floor for ``check_spread`` (``check_modern_magnitudes``).
    """
    params = check_params(params)
    X, x_max = _checked_matrix("X", X, params["W1"].shape[1], params["W1"].dtype, "linear")
    m, n_hidden = X.shape[0], params["W1"].shape[0]
    k = check_k("k", k, n_hidden)
    if aux_k is not None:
        aux_k = check_k("aux_k", aux_k, n_hidden)
        if m < 2:
            raise ValueError(f"aux_k: AuxK divides by the spread of the residuals over the "
                             f"batch, which needs m >= 2 examples, got m = {m}")
    alpha = check_nonnegative("alpha", alpha)
    if aux_scale is not None:
        aux_scale = check_nonnegative("aux_scale", aux_scale)
    dead = check_dead(dead, n_hidden)
    lam = check_nonnegative("lam", lam)
    mask = check_mask("mask", mask, (m, n_hidden), per_row=k)
    aux_mask = check_mask("aux_mask", aux_mask, (m, n_hidden))
    if aux_mask is not None and (dead is None or np.any(aux_mask & ~dead)):
        raise ValueError("aux_mask: expected True only on dead latents (dead[j] True)")
    target_max = None
    if aux_target is not None:
        aux_target, target_max = _checked_matrix("aux_target", aux_target, X.shape[1], X.dtype)
        if aux_target.shape[0] != m:
            raise ValueError(f"aux_target: expected shape {X.shape} like X, got {aux_target.shape}")
    use_aux = aux_k is not None and dead is not None and bool(dead.any())
    # AuxK's weight in J is alpha * c, c = aux_scale; without aux_scale, the caller computes c
    # from X: (1/2m) sum_i ||x_i - x_mean||^2, at most (1/2m) sum_i ||x_i||^2 <= n_visible x_max^2 / 2.
    scale_bound = ((X.shape[1] * x_max * x_max / 2, "X") if aux_scale is None
                   else (aux_scale, "aux_scale"))
    spread_floor = check_modern_magnitudes(params, m, x_max, lam=lam, alpha=alpha if use_aux else None,
                                           target_max=target_max, aux_scale=scale_bound)
    return params, X, k, aux_k, alpha, dead, lam, aux_scale, mask, aux_mask, aux_target, spread_floor


def check_spread(spread, alpha=0.0, floor=0.0):
    """Raise if the residuals' spread sum ||e - mean(e)||^2 is 0: AuxK's L_aux is undefined;
    or (the checked entry points) if it is at most alpha * floor, ``floor`` from
    ``check_modern_magnitudes``: then alpha L_aux or its gradient, which divide by it, could
    overflow. Training passes no floor: there such a batch makes J non-finite, and the run stops.
    Without a floor (training), a spread that is 0, NaN or infinite (a diverging run's
    residuals, rounded to one value or overflowed) is not refused either: J comes out
    non-finite, and training stops as "nonfinite"."""
    if floor == 0.0 and not 0 < spread < math.inf:
        return
    if not spread > 0:
        raise ValueError("aux_k: every residual e = x - x_hat of the batch is the same, so "
                         "AuxK's normalization sum ||e - mean(e)||^2 is 0")
    if not spread > alpha * floor:
        if alpha > 1 and spread > floor:
            raise ValueError(f"alpha: {alpha!r} is too large for this batch: AuxK's alpha * "
                             f"sum ||e_hat - e||^2 / sum ||e - mean(e)||^2 (the latter {float(spread):.3g}) "
                             f"and its gradient could overflow the params' dtype")
        raise ValueError(f"aux_k: the residuals e = x - x_hat of the batch are nearly all the same: "
                         f"AuxK's normalization sum ||e - mean(e)||^2 is {float(spread):.3g}, too small "
                         f"to divide by (alpha L_aux and its gradient could overflow the params' dtype)")


def check_z2(z2):
    """Return pre-activations z2 as a 2-D float array (m, n_hidden), finite; else raise naming it.

    float32 and float64 stay as they are; other real dtypes become float64.
    """
    z2 = plain_array("z2", z2)
    if not isinstance(z2, np.ndarray):
        z2 = np.asarray(z2)
    if z2.ndim != 2 or z2.shape[1] < 1:
        raise ValueError(f"z2: expected a 2-D array (m, n_hidden) with n_hidden >= 1, got shape "
                         f"{z2.shape}")
    dtype = z2.dtype if z2.dtype in DTYPES else np.dtype(np.float64)
    return check_matrix("z2", z2, z2.shape[1], dtype)


def check_modern_X(X, params):
    """X for the modern models' encoders (any finite values), in the params' dtype; raises
    naming X or the params if z2 = (X - b2) @ W1.T + b1 could overflow."""
    X, x_max = _checked_matrix("X", X, params["W1"].shape[1], params["W1"].dtype, "linear")
    check_modern_magnitudes(params, X.shape[0], x_max, encoder_only=True)
    return X


def check_modern_magnitudes(params, m, x_max, *, l1=0.0, lam=0.0, alpha=None, target_max=None,
                            encoder_only=False, aux_scale=None):
    """check_magnitudes for the modern models (modern_sae.py, fast.py's twins); returns spread_floor.

    Bounds every intermediate of relu_l1_cost_and_grad / topk_cost_and_grad
    from above, cheaply (the params' Frobenius norms, x_max = max |X|, which
    the check of X found already) and conservatively, with row norms:
    ||x_bar_i|| <= sqrt(n_visible) x_max + ||b2||, ||z2_i|| <= ||W1|| ||x_bar_i||
    + ||b1|| (a2, ReLU or TopK, no larger), ||x_hat_i|| <= ||z2_i|| ||W2|| + ||b2||,
    ||delta3_i|| <= ||x_hat_i|| + sqrt(n_visible) x_max, and so on through the
    penalty, the weight decay and the gradient; sums over rows are at most m
    times a row's bound. A bound within a factor 16 of the dtype's largest
    number refuses the call, naming the argument with the largest factor in
    it (X, params['W1'], ..., l1, lam, alpha, aux_target) and its value.

    alpha: None without AuxK (or no dead latent), else AuxK's alpha; aux_scale: None, or
    (a bound of c, the argument behind it: "X" or "aux_scale"), AuxK's weight being alpha c;
    target_max: max |aux_target| if given. AuxK divides by the residuals'
    spread s = sum ||e - mean(e)||^2, known only after the forward pass: the
    returned spread_floor F is such that every AuxK value stays below the
    limit when s > alpha F (``check_spread(s, alpha, F)`` tests it). 0.0
    without AuxK. encoder_only: bound z2 alone (encode_relu, encode_topk,
    preactivations).
    """
    dtype = params["W1"].dtype
    largest = float(np.finfo(dtype).max)
    limit = largest / 16
    norm = _param_norms(params, limit)
    n_hidden, n_visible = params["W1"].shape
    shown = {"X": f"values up to {x_max:.4g} are", "aux_target": f"values up to {target_max or 0.0:.4g} are",
             "l1": f"{l1!r} is", "lam": f"{lam!r} is", "alpha": f"{alpha!r} is",
             "aux_scale": f"{aux_scale[0]!r} is" if aux_scale else ""}
    shown.update({f"params['{name}']": f"|{name}| = {norm[name]:.4g} is" for name in PARAM_NAMES})

    def named(name, value):                      # a bound: (value, the argument behind it)
        return (float(value), name)

    def times(*factors):                         # blame the largest factor that is an argument
        value = math.prod(f[0] for f in factors)
        return value, max((f for f in factors if f[1]), key=lambda f: f[0], default=(0, None))[1]

    def plus(*terms):                            # blame the largest term that is an argument
        values = [t[0] for t in terms]
        value = math.fsum(values) if all(map(math.isfinite, values)) else math.inf
        return value, max((t for t in terms if t[1]), key=lambda t: t[0], default=(0, None))[1]

    def require(bound, what):
        value, culprit = bound
        if not value < limit:
            reach = f"would reach about {value:.3g}" if math.isfinite(value) else "would overflow"
            hint = "; standardize X" if culprit == "X" else ""
            raise ValueError(f"{culprit}: {shown[culprit]} too large: {what} {reach}, beyond "
                             f"{dtype}'s largest number {largest:.4g}{hint}")

    rows, root = (float(m), None), (math.sqrt(n_visible), None)
    W1, b1, W2, b2 = (named(f"params['{name}']", norm[name]) for name in PARAM_NAMES)
    x_row = times(root, named("X", x_max))
    x_bar = plus(x_row, b2)
    require(x_bar, "x_bar = X - b2")
    z2 = plus(times(W1, x_bar), b1)
    require(z2, "z2 = (X - b2) @ W1.T + b1")
    if encoder_only:
        return 0.0
    lam_, l1_ = named("lam", lam), named("l1", l1)
    require(lam_, "the weight decay's gradient lam * W")
    require(times(lam_, plus(times(W1, W1), times(W2, W2))), "the weight decay (lam / 2) * sum(W**2)")
    require(l1_, "the L1 penalty's gradient l1 * ||W2[:, j]||")
    decoded = times(z2, W2)                                   # ||a2_i @ W2.T||
    x_hat = plus(decoded, b2)
    require(x_hat, "x_hat = a2 @ W2.T + b2")
    delta3 = plus(x_hat, x_row)
    require(times(rows, delta3, delta3), "the reconstruction error sum ||x_hat - X||^2")
    require(times(rows, delta3, plus(z2, (1.0, None))), "the gradient delta3.T @ a2 and the sums of a2")
    require(times(rows, l1_, plus(decoded, z2)), "the L1 penalty l1 * sum a2_ij ||W2[:, j]|| and its gradient")
    delta2 = times(W2, plus(delta3, l1_))
    require(times(rows, delta2, plus(x_bar, W1, (1.0, None))),
            "the gradient delta2.T @ (X - b2), its sums and delta2 @ W1")
    if alpha is None:
        return 0.0
    alpha_ = named("alpha", alpha)
    require(alpha_, "AuxK's weight alpha")
    if aux_scale is not None and alpha > 0:
        alpha_ = times(alpha_, (float(aux_scale[0]), aux_scale[1]))     # the weight alpha c
        require(alpha_, "AuxK's weight alpha c")
    e = delta3 if target_max is None else times(root, named("aux_target", target_max))
    miss = plus(decoded, e)                                   # ||e_hat_i - e_i||
    require(times(rows, plus(times(e, e, (4.0, None)), e)), "AuxK's spread sum ||e - mean(e)||^2")
    require(times(rows, miss, miss), "AuxK's sum ||e_hat - e||^2")
    require(times(alpha_, rows, miss, miss), "alpha * sum ||e_hat - e||^2")
    A, Wd, Wn = miss[0], norm["W2"], norm["W1"]
    return max(m * A * A, 2 * m * max(1.0, A) * max(1.0, Wd * max(1.0, m * x_bar[0], m * Wn)),
               2 * m * m * A * z2[0]) / limit



def check_decoder(name, W2):
    """Return a decoder W2 (n_visible, n_hidden) as a finite 2-D float array, or raise naming ``name``.

    float32 and float64 stay as they are; other real dtypes become float64.
    Refused when a column's squares could sum to within a factor 16 of the
    dtype's largest number (its norm would overflow).
    """
    W2, w_max = _float_matrix(name, W2)
    largest = float(np.finfo(W2.dtype).max)
    if not w_max * w_max * W2.shape[0] < largest / 16:
        raise ValueError(f"{name}: values up to {w_max:.4g} are too large: the column norms "
                         f"sqrt(sum W2**2) could overflow, beyond {W2.dtype}'s largest number {largest:.4g}")
    return W2


def check_decoder_grad(W2, grad_W2):
    """W2 as check_decoder, and grad_W2 a finite float array of W2's shape (float32 and float64
    stay, other real dtypes become float64); raises naming grad_W2 if the projection
    g - u (u . g) could overflow (u: W2's unit columns)."""
    W2 = check_decoder("W2", W2)
    grad_W2, g_max = _float_matrix("grad_W2", grad_W2)
    if grad_W2.shape != W2.shape:
        raise ValueError(f"grad_W2: expected shape {W2.shape} like W2, got {grad_W2.shape}")
    result = np.result_type(W2, grad_W2)
    largest = float(np.finfo(result).max)
    bound = 4 * g_max * math.sqrt(W2.shape[0])                # |u . g| <= ||u|| ||g_j||, ||u|| ~ 1
    if not bound < largest / 16:
        raise ValueError(f"grad_W2: values up to {g_max:.4g} are too large: the projection "
                         f"g - u (u . g) would reach about {bound:.3g}, beyond {result}'s largest "
                         f"number {largest:.4g}")
    return W2, grad_W2


def _float_matrix(name, A):
    """(A, max |A|): A a non-empty, finite 2-D array of real numbers, as float32 or float64
    (kept) or float64 (other real dtypes); else raise naming ``name``."""
    A = _as_ndarray(name, A)
    if A.ndim != 2 or A.size == 0:
        raise ValueError(f"{name}: expected a non-empty 2-D array (n_visible, n_hidden), got shape {A.shape}")
    dtype = A.dtype if A.dtype in DTYPES else np.dtype(np.float64)
    return _checked_matrix(name, A, A.shape[1], dtype)
