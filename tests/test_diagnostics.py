"""Diagnostics: fraction of variance explained, rho_hat spread, dead and always-on units."""

import numpy as np
import pytest

import sparse_autoencoder as sae
from diagnostics import diagnostics, fraction_of_variance_explained


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
