"""Input validation for the model's entry points: clear errors, raised early.

The model (``sparse_autoencoder.py``) and its tuned twin (``fast.py``) call
these before any arithmetic, so that bad input never reaches the math as a
NumPy traceback or a silent NaN. Every error names the argument and what was
expected.

    check_params(params)        the dict W1, b1, W2, b2: keys, shapes, one float dtype, finite
    check_X(X, params, decoder) X (m, n_visible), finite, in [0, 1] for the sigmoid decoder
    check_call(...)             both, and penalty, decoder, rho, beta, lam, as cost_and_grad takes them
    check_hyperparameters(...)  0 < rho < 1, beta >= 0, lam >= 0
    check_count, check_choice, check_dtype, check_matrix, as_generator   the small ones
"""

from __future__ import annotations

import numbers

import numpy as np

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
    X = check_X(X, params, decoder)
    smallest = np.finfo(X.dtype).tiny
    if rho < smallest:
        raise ValueError(f"rho: expected at least {smallest:.3g} (the smallest normal "
                         f"{X.dtype} number), got {rho!r}")
    return params, X, float(rho), float(beta), float(lam)


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
        if not all_finite(params[name]):
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
    return check_matrix("X", X, n_visible, params["W1"].dtype, decoder)


def check_matrix(name, A, width, dtype, decoder=None):
    """Return A as a 2-D (m, width) array of ``dtype``, or raise naming ``name``.

    Checks as ``check_X`` does: real numbers, m >= 1, finite, and in [0, 1]
    when ``decoder == "sigmoid"``.
    """
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
    if decoder == "sigmoid" and in_unit_interval(A):
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
    if rng is None or (isinstance(rng, numbers.Integral) and not isinstance(rng, bool)):
        return np.random.default_rng(rng)
    raise TypeError(
        f"rng: expected a numpy.random.Generator, an int seed or None, got {rng!r}"
    )
