"""Diagnostics: fraction of variance explained, rho_hat spread, dead and always-on units."""

import numpy as np
import pytest

import sparse_autoencoder as sae
from saelab.diagnostics import diagnostics, fraction_of_variance_explained


def test_fve_of_a_perfect_reconstruction_is_one():
    X = np.random.default_rng(0).random((20, 6))
    assert fraction_of_variance_explained(X, X) == 1.0


def test_fve_of_predicting_the_mean_is_zero():
    X = np.random.default_rng(1).random((20, 6))
    mean = np.broadcast_to(X.mean(axis=0), X.shape)
    assert fraction_of_variance_explained(X, mean) == pytest.approx(0.0, abs=1e-14)
    assert fraction_of_variance_explained(X, mean + 0.1) < 0         # worse than the mean


def test_fve_undefined_without_variance():
    X = np.ones((4, 3))
    assert np.isnan(fraction_of_variance_explained(X, X))


def test_diagnostics_of_a_network_that_predicts_the_mean():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((30, 5))
    params = sae.init_params(5, 3, rng=rng)
    params["W2"][:] = 0
    params["b2"][:] = X.mean(axis=0)                         # linear decoder: a3 = mean(x) always
    d = diagnostics(params, X, decoder="linear", block_size=7)
    assert d["fve"] == pytest.approx(0.0, abs=1e-12)
    assert d["reconstruction_mse"] == pytest.approx(X.var(axis=0).mean(), rel=1e-12)


def test_diagnostics_of_a_perfect_reconstruction():
    # Two distinct examples: one hidden unit takes two values on them, and a
    # linear decoder maps those two values exactly back onto the examples.
    rng = np.random.default_rng(3)
    x_a, x_b = rng.standard_normal(4), rng.standard_normal(4)
    X = np.array([x_a, x_b, x_a, x_b, x_b])
    params = sae.init_params(4, 1, rng=rng)
    s_a, s_b = sae.encode(params, np.array([x_a, x_b]))[:, 0]
    params["W2"][:, 0] = (x_b - x_a) / (s_b - s_a)
    params["b2"][:] = x_a - params["W2"][:, 0] * s_a
    d = diagnostics(params, X, decoder="linear")
    assert d["fve"] == pytest.approx(1.0, abs=1e-12)
    assert d["reconstruction_mse"] < 1e-24


def test_diagnostics_match_a_direct_computation_in_any_block_size():
    rng = np.random.default_rng(4)
    X = rng.random((23, 7))
    params = sae.init_params(7, 5, rng=rng)
    params["b1"][:] = [-40.0, 40.0, 0.0, 0.5, -0.5]          # unit 0 dead, unit 1 always on
    a2 = sae.encode(params, X)
    a3 = sae.decode(params, a2)
    expected_fve = fraction_of_variance_explained(X, a3)
    for block_size in (1, 4, 23, 1000):
        d = diagnostics(params, X, rho=0.1, block_size=block_size)
        assert d["reconstruction_mse"] == pytest.approx(np.mean((a3 - X) ** 2), rel=1e-12)
        assert d["fve"] == pytest.approx(expected_fve, rel=1e-12)
        np.testing.assert_allclose(d["rho_hat"], a2.mean(axis=0), rtol=1e-12)
        assert d["rho_hat_mean"] == pytest.approx(a2.mean(), rel=1e-12)
        assert d["rho_hat_std"] == pytest.approx(a2.mean(axis=0).std(), rel=1e-12)
        assert d["rho_hat_min"] == pytest.approx(a2.mean(axis=0).min(), rel=1e-12)
        assert d["rho_hat_max"] == pytest.approx(a2.mean(axis=0).max(), rel=1e-12)
        assert d["dead_units"] == np.count_nonzero(a2.max(axis=0) <= 0.5)
        assert d["always_on_units"] == np.count_nonzero(a2.min(axis=0) >= 0.5)
        assert d["mean_active_units"] == pytest.approx((a2 > 0.5).sum(axis=1).mean(), rel=1e-12)
        assert d["rho"] == 0.1 and d["m"] == 23 and d["n_hidden"] == 5
    assert d["dead_units"] >= 1 and d["always_on_units"] >= 1


def test_diagnostics_in_float32_sum_in_float64():
    rng = np.random.default_rng(5)
    X = rng.random((50, 6))
    params = sae.init_params(6, 3, rng=rng)
    d64 = diagnostics(params, X)
    d32 = diagnostics({k: v.astype(np.float32) for k, v in params.items()}, X.astype(np.float32))
    assert d32["reconstruction_mse"] == pytest.approx(d64["reconstruction_mse"], rel=1e-5)
    assert d32["fve"] == pytest.approx(d64["fve"], rel=1e-4, abs=1e-5)


def test_diagnostics_validate_their_input():
    params = sae.init_params(6, 3, rng=0)
    with pytest.raises(ValueError, match="X: expected shape"):
        diagnostics(params, np.zeros((4, 5)))
    with pytest.raises(ValueError, match="decoder"):
        diagnostics(params, np.zeros((4, 6)), decoder="relu")


# --- the papers' metrics: L0, normalized MSE, dead latents, feature density -----

from saelab.diagnostics import (dead_latents, feature_density, firing_fractions, l0, l0_label,  # noqa: E402
                         normalized_mse, sparsity_metrics)

# Three examples, four latents, worked by hand: row 0 fires latents 0 and 2,
# row 1 fires latent 0, row 2 fires latents 0, 1 and 2; latent 3 never fires.
A2_BY_HAND = np.array([[0.7, 0.0, 2.0, 0.0],
                       [1.5, 0.0, 0.0, 0.0],
                       [0.1, 3.0, 0.2, 0.0]])


def test_l0_by_hand():
    assert l0(A2_BY_HAND) == pytest.approx((2 + 1 + 3) / 3)
    # Sigmoid units: only activations above 0.5 count; 0.7, 1.5, 2.0, 3.0 do.
    assert l0(A2_BY_HAND, threshold=0.5) == pytest.approx((2 + 1 + 1) / 3)
    assert l0_label(0.0) == "L0" and l0_label(0.5) == "L0 (a2 > 0.5)"


def test_normalized_mse_by_hand():
    X = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 3.0]])       # mean (1, 1)
    X_hat = np.array([[0.0, 1.0], [2.0, 0.0], [1.0, 1.0]])   # errors 1 + 0 + 4 = 5
    # sum ||x - mean||^2 = (1 + 1) + (1 + 1) + (0 + 4) = 8
    assert normalized_mse(X, X_hat) == pytest.approx(5 / 8)
    assert normalized_mse(X, X_hat) == pytest.approx(1 - fraction_of_variance_explained(X, X_hat))
    assert normalized_mse(X, np.broadcast_to(X.mean(axis=0), X.shape)) == pytest.approx(1.0)
    assert np.isnan(normalized_mse(np.ones((3, 2)), np.zeros((3, 2))))


def test_firing_fractions_dead_latents_and_density_by_hand():
    np.testing.assert_allclose(firing_fractions(A2_BY_HAND), [1.0, 1 / 3, 2 / 3, 0.0])
    assert dead_latents(A2_BY_HAND) == 1
    assert dead_latents(A2_BY_HAND, threshold=0.5) == 1       # latent 3; latent 2 fires once (2.0)
    density = feature_density([1.0, 0.01, 0.01, 0.0, 1e-7], bins=[-3.0, -1.5, 0.0])
    np.testing.assert_allclose(density["log10_density"], [0.0, -2.0, -2.0, -7.0])
    assert density["dead"] == 1
    assert density["counts"].tolist() == [3, 1]               # -2, -2 and -7 (clipped) below -1.5
    with pytest.raises(ValueError, match="fractions"):
        feature_density([1.5])


def test_sparsity_metrics_agree_with_the_single_functions_in_any_block_size():
    rng = np.random.default_rng(7)
    X = rng.random((25, 6))
    W = rng.standard_normal((6, 5))
    W[:, 4] = -10.0                                          # with X >= 0: latent 4 never fires

    def encode(x):
        return np.maximum(x @ W - 0.5, 0)

    def decode(a2):
        return a2 @ W.T / 10

    A2, X_hat = encode(X), decode(encode(X))
    for block_size in (1, 4, 25, 100):
        metrics = sparsity_metrics(encode, decode, X, block_size=block_size)
        assert metrics["l0"] == pytest.approx(l0(A2), rel=1e-12)
        assert metrics["normalized_mse"] == pytest.approx(normalized_mse(X, X_hat), rel=1e-12)
        assert metrics["fve"] == pytest.approx(1 - metrics["normalized_mse"], rel=1e-12)
        np.testing.assert_allclose(metrics["firing_fractions"], firing_fractions(A2))
        assert metrics["dead_latents"] == dead_latents(A2) >= 1
        assert metrics["dead_fraction"] == metrics["dead_latents"] / 5
        assert metrics["l0_label"] == "L0" and metrics["m"] == 25 and metrics["n_hidden"] == 5
    sigmoid = sparsity_metrics(encode, decode, X, threshold=0.5)
    assert sigmoid["l0"] == pytest.approx(l0(A2, 0.5)) and sigmoid["l0_label"] == "L0 (a2 > 0.5)"
