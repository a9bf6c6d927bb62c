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

The sparsity-reconstruction metrics of the papers (Anthropic 2023-24, Gao et
al. 2024), for any model, from its latents A2 (m, n_hidden) and its
reconstructions X_hat (m, n_visible) on evaluation data X:

    l0(A2, threshold)               mean number of latents that fire per example,
                                    sum_ij [A2_ij > threshold] / m. threshold 0 for
                                    ReLU and TopK (exactly zero = off); the sigmoid
                                    models never reach 0, so for them threshold 0.5,
                                    shown as "L0 (a2 > 0.5)" (``l0_label``)
    normalized_mse(X, X_hat)        sum_i ||x_hat_i - x_i||^2 / sum_i ||x_i - x_mean||^2,
                                    x_mean the mean of the rows of X (the evaluation
                                    data's own mean); = 1 - FVE
    firing_fractions(A2, threshold) (n_hidden,) fraction of examples on which each latent fires
    dead_latents(A2, threshold)     number of latents that never fire on X
    feature_density(A2, threshold)  histogram of log10(firing fraction) of the latents
                                    that fire at least once; the dead ones counted apart
    sparsity_metrics(encode, decode, X, threshold)   all of the above in one pass over
                                    X in row blocks, for an encoder and decoder given
                                    as functions
"""

from __future__ import annotations

import numpy as np

import sparse_autoencoder as sae
from saelab.checks import validation

ACTIVE_THRESHOLD = 0.5
DENSITY_BINS = np.arange(-5.0, 0.25, 0.25)       # log10 of a firing fraction, 1e-5 .. 1


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
    validation.check_magnitudes(params, X.shape[0], float(np.abs(X).max()), penalty="none",
                                beta=0.0, lam=0.0, decoder=decoder)   # the squared errors fit
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


# ---------------------------------------------------------------------------
# The papers' metrics: L0, normalized MSE, dead latents, feature density
# ---------------------------------------------------------------------------


def l0_label(threshold=0.0):
    """How L0 is shown: "L0" for exact zeros (threshold 0), "L0 (a2 > 0.5)" for the sigmoid models."""
    return "L0" if threshold == 0 else f"L0 (a2 > {threshold:g})"


def _latents(A2):
    A2 = np.asarray(A2)
    if A2.ndim != 2 or A2.shape[0] < 1:
        raise ValueError(f"A2: expected a 2-D array (m, n_hidden) with m >= 1, got shape {A2.shape}")
    return A2


def l0(A2, threshold=0.0):
    """Mean over examples of the number of latents with A2_ij > threshold.

    A2: (m, n_hidden) latents (hidden activations), one example per row.
    threshold 0: the nonzero latents (ReLU, TopK); 0.5 for sigmoid units.
    """
    A2 = _latents(A2)
    return float(np.count_nonzero(A2 > threshold) / A2.shape[0])


def normalized_mse(X, X_hat):
    """sum_i ||x_hat_i - x_i||^2 / sum_i ||x_i - x_mean||^2, x_mean the mean row of X.

    0 = perfect; 1 = no better than predicting the evaluation data's mean.
    Equals 1 - ``fraction_of_variance_explained(X, X_hat)``. NaN when X has
    no variance (every row the same).
    """
    X = np.asarray(X, dtype=np.float64)
    X_hat = np.asarray(X_hat, dtype=np.float64)
    if X.ndim != 2 or X.shape != X_hat.shape:
        raise ValueError(f"X, X_hat: expected two 2-D arrays of one shape, got {X.shape} and {X_hat.shape}")
    total = np.sum((X - X.mean(axis=0)) ** 2)
    return float(np.sum((X_hat - X) ** 2) / total) if total > 0 else float("nan")


def firing_fractions(A2, threshold=0.0):
    """(n_hidden,) the fraction of examples (rows of A2) on which each latent exceeds threshold."""
    A2 = _latents(A2)
    return np.count_nonzero(A2 > threshold, axis=0) / A2.shape[0]


def dead_latents(A2, threshold=0.0):
    """The number of latents that never exceed threshold on any row of A2."""
    return int(np.count_nonzero(firing_fractions(A2, threshold) == 0))


def feature_density(fractions, bins=DENSITY_BINS):
    """Histogram of log10 of the firing fractions (n_hidden,) of ``firing_fractions``.

    Latents that never fire (fraction 0, log10 = -inf) are not in the
    histogram; they are counted in "dead". Fractions below the first bin
    edge go into the first bin. Returns {"counts", "edges", "log10_density"
    (of the latents that fire, in order), "dead"}.
    """
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or np.any(fractions < 0) or np.any(fractions > 1):
        raise ValueError("fractions: expected a 1-D array of firing fractions in [0, 1]")
    edges = np.asarray(bins, dtype=np.float64)
    alive = fractions > 0
    log10_density = np.log10(fractions[alive])
    counts, _ = np.histogram(np.clip(log10_density, edges[0], edges[-1]), bins=edges)
    return {"counts": counts, "edges": edges, "log10_density": log10_density,
            "dead": int(np.count_nonzero(~alive))}


def sparsity_metrics(encode, decode, X, *, threshold=0.0, block_size=4096):
    """L0, normalized MSE, dead latents and firing fractions of a model on X, in row blocks.

    encode(x) -> a2 (b, n_hidden) and decode(a2) -> x_hat (b, n_visible)
    are the model's own functions (the right encoder for each model: sigmoid,
    ReLU or TopK). X: (m, n_visible) evaluation data. threshold: what counts
    as firing (0, or 0.5 for sigmoid units). Sums are float64. Returns a
    dict: "l0", "l0_label", "normalized_mse", "fve", "dead_latents",
    "dead_fraction", "firing_fractions" (n_hidden,), "n_hidden", "m".
    """
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"X: expected a 2-D array (m, n_visible) with m >= 1, got shape {X.shape}")
    block_size = validation.check_count("block_size", block_size)
    m = X.shape[0]
    mean_x = X.mean(axis=0, dtype=np.float64)
    squared_error = total_variation = 0.0
    fire_counts = None
    for start in range(0, m, block_size):
        x = X[start:start + block_size]
        a2 = np.asarray(encode(x))
        x_hat = np.asarray(decode(a2))
        fired = np.count_nonzero(a2 > threshold, axis=0)
        fire_counts = fired if fire_counts is None else fire_counts + fired
        squared_error += _sum_of_squares(x_hat.astype(np.float64) - x)
        total_variation += _sum_of_squares(x.astype(np.float64) - mean_x)
    n_hidden = fire_counts.size
    dead = int(np.count_nonzero(fire_counts == 0))
    return {
        "l0": float(fire_counts.sum() / m),
        "l0_label": l0_label(threshold),
        "normalized_mse": float(squared_error / total_variation) if total_variation > 0 else float("nan"),
        "fve": _fve(squared_error, total_variation),
        "dead_latents": dead,
        "dead_fraction": dead / n_hidden,
        "firing_fractions": fire_counts / m,
        "n_hidden": n_hidden,
        "m": m,
    }
