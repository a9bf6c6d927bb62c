"""Numerical gradient checking, as in the notes and UFLDL's exercise.

Library:
    numerical_gradient(f, theta, eps=1e-4)   central differences, one coordinate at a time
    relative_difference(a, b)                ||a - b|| / ||a + b||, the exercise's measure
"""

from __future__ import annotations

import numpy as np


def numerical_gradient(f, theta, eps=1e-4):
    """Central-difference gradient of a scalar function f at theta.

    g_i = (f(theta + eps e_i) - f(theta - eps e_i)) / (2 eps), for each i.

    f: maps a 1-D float array to a scalar. theta: 1-D float array; it is
    perturbed in place one coordinate at a time and each coordinate is
    restored to its exact original value afterwards. Returns an array with
    theta's shape and dtype.
    """
    if not isinstance(theta, np.ndarray) or theta.ndim != 1 or theta.dtype.kind != "f":
        raise ValueError(
            f"theta: expected a 1-D float numpy array, got "
            f"{getattr(theta, 'shape', type(theta).__name__)} of dtype {getattr(theta, 'dtype', None)}"
        )
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps: expected a positive finite step, got {eps!r}")
    grad = np.empty_like(theta)
    for i in range(theta.size):
        original = theta[i]
        theta[i] = original + eps
        f_plus = float(f(theta))
        theta[i] = original - eps
        f_minus = float(f(theta))
        theta[i] = original                      # restore exactly
        grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def relative_difference(a, b):
    """||a - b|| / ||a + b|| (Euclidean norms of the flattened arrays).

    0 when a == b; the exercise expects below 1e-9 for a correct gradient.
    Returns 0.0 when both are zero.
    """
    a = np.ravel(np.asarray(a, dtype=np.float64))
    b = np.ravel(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"a, b: expected arrays of one size, got {a.size} and {b.size}")
    denominator = np.linalg.norm(a + b)
    if denominator == 0:
        return 0.0 if not np.any(a - b) else float("inf")
    return float(np.linalg.norm(a - b) / denominator)
