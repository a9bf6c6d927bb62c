"""What a trained sparse autoencoder does on a data set: the usual diagnostics.

    diagnostics(params, X, decoder="sigmoid", rho=None) -> dict

computed in one pass over X in row blocks (memory stays small for 60,000
MNIST images), with float64 sums whatever the params' dtype:

    reconstruction_mse   mean over examples and inputs of (a3 - x)^2
                         (the notes' reconstruction term is n_visible/2 times this)
    fve                  fraction of variance explained,
                         1 - sum_i ||x_i - a3_i||^2 / sum_i ||x_i - mean(x)||^2,
                         mean(x) the mean example; 1 = perfect, 0 = no better
                         than predicting the mean example, < 0 = worse
    rho_hat              (n_hidden,) average activation of each hidden unit
    rho_hat_mean, rho_hat_std, rho_hat_min, rho_hat_max   its spread
    dead_units           units never above the threshold (0.5) on X
    always_on_units      units never below it on X
    mean_active_units    average number of units above it per example
    rho                  the target passed in (None if none), for reports
"""

from __future__ import annotations

import numpy as np

import sparse_autoencoder as sae
import validation

ACTIVE_THRESHOLD = 0.5


def fraction_of_variance_explained(X, X_hat):
    """1 - sum ||x_i - x_hat_i||^2 / sum ||x_i - mean(x)||^2 for X, X_hat of shape (m, n).

    Returns NaN when X has no variance at all (every row the same), where
    the ratio is undefined.
    """
    X = np.asarray(X, dtype=np.float64)
    X_hat = np.asarray(X_hat, dtype=np.float64)
    if X.ndim != 2 or X.shape != X_hat.shape:
        raise ValueError(f"X, X_hat: expected two 2-D arrays of one shape, got {X.shape} and {X_hat.shape}")
    residual = np.sum((X - X_hat) ** 2)
    total = np.sum((X - X.mean(axis=0)) ** 2)
    return _fve(residual, total)


def _fve(residual, total):
    if total == 0:
        return float("nan")
    return float(1.0 - residual / total)


def diagnostics(params, X, *, decoder="sigmoid", rho=None, threshold=ACTIVE_THRESHOLD,
                block_size=4096):
    """The diagnostics listed in the module docstring, as a dict of floats/ints (and rho_hat).

    params: trained params; X: (m, n_visible) data (checked as by
    ``cost_and_grad``); decoder: the model's decoder; rho: the target
    activation, only echoed back; threshold: what counts as active.
    """
    params = sae.check_params(params)
    validation.check_choice("decoder", decoder, sae.DECODERS)
    X = sae.check_X(X, params, decoder)
    block_size = validation.check_count("block_size", block_size)
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.floating)) \
            or not 0 <= threshold < 1:
        raise ValueError(f"threshold: expected an activation level in [0, 1), got {threshold!r}")
    m, n_visible = X.shape
    n_hidden = params["W1"].shape[0]

    mean_x = X.mean(axis=0, dtype=np.float64)                 # (n_visible,)
    squared_error = 0.0                                       # sum ||x - a3||^2
    total_variation = 0.0                                     # sum ||x - mean(x)||^2
    sum_a2 = np.zeros(n_hidden)                               # (n_hidden,)
    max_a2 = np.full(n_hidden, -np.inf)
    min_a2 = np.full(n_hidden, np.inf)
    active_count = 0                                          # sum over examples of #active
    for start in range(0, m, block_size):
        x = X[start:start + block_size]                       # (b, n_visible)
        a2 = sae.encode(params, x)                            # (b, n_hidden)
        a3 = sae.decode(params, a2, decoder=decoder)          # (b, n_visible)
        squared_error += _sum_of_squares(a3.astype(np.float64) - x)
        total_variation += _sum_of_squares(x.astype(np.float64) - mean_x)
        sum_a2 += a2.sum(axis=0, dtype=np.float64)
        np.maximum(max_a2, a2.max(axis=0), out=max_a2)
        np.minimum(min_a2, a2.min(axis=0), out=min_a2)
        active_count += int(np.count_nonzero(a2 > threshold))

    rho_hat = sum_a2 / m                                      # (n_hidden,)
    return {
        "reconstruction_mse": squared_error / (m * n_visible),
        "fve": _fve(squared_error, total_variation),
        "rho_hat": rho_hat,
        "rho_hat_mean": float(rho_hat.mean()),
        "rho_hat_std": float(rho_hat.std()),
        "rho_hat_min": float(rho_hat.min()),
        "rho_hat_max": float(rho_hat.max()),
        "dead_units": int(np.count_nonzero(max_a2 <= threshold)),
        "always_on_units": int(np.count_nonzero(min_a2 >= threshold)),
        "mean_active_units": active_count / m,
        "n_hidden": n_hidden,
        "m": m,
        "rho": rho,
    }


def _sum_of_squares(A):
    flat = A.ravel()
    return float(flat @ flat)
