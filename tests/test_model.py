"""The model: gradients (numerical and the notes' per-example loop), properties, validation."""

import itertools
import math
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import expit

import fast
import sparse_autoencoder as sae
from gradcheck import numerical_gradient, relative_difference
from reference import loop_cost_and_grad

COMBINATIONS = list(itertools.product(sae.PENALTIES, sae.DECODERS))
# Strong penalties on the small net below: test_penalties_are_strong_enough_to_matter.
HYPER = dict(rho=0.1, beta=3.0, lam=0.1)


def make_net(n_visible=6, n_hidden=4, m=7, decoder="sigmoid", seed=0, dtype=np.float64):
    """Small params (UFLDL init plus nonzero biases) and data X (m, n_visible).

    Sigmoid decoder: X uniform on [0, 1]; linear decoder: X standard normal.
    """
    rng = np.random.default_rng(seed)
    params = sae.init_params(n_visible, n_hidden, rng, dtype=dtype)
    params["b1"][:] = rng.uniform(-0.5, 0.5, n_hidden)
    params["b2"][:] = rng.uniform(-0.5, 0.5, n_visible)
    if decoder == "sigmoid":
        X = rng.uniform(0.0, 1.0, size=(m, n_visible))
    else:
        X = rng.standard_normal((m, n_visible))
    return params, X.astype(dtype)


def numerical_grads(params, X, eps, **kwargs):
    """Central differences of cost_and_grad's cost, as a params-shaped dict."""
    n_hidden, n_visible = params["W1"].shape
    theta = sae.pack(params)
    cost = lambda t: sae.cost_and_grad(sae.unpack(t, n_visible, n_hidden), X, **kwargs)[0]  # noqa: E731
    return sae.unpack(numerical_gradient(cost, theta, eps), n_visible, n_hidden)


# ---------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("penalty, decoder", COMBINATIONS)
def test_gradient_matches_central_differences(penalty, decoder):
    params, X = make_net(decoder=decoder)
    kwargs = dict(HYPER, penalty=penalty, decoder=decoder)
    _, grads = sae.cost_and_grad(params, X, **kwargs)

    # UFLDL's criterion, at the notes' step eps = 1e-4, over all parameters.
    numerical = numerical_grads(params, X, 1e-4, **kwargs)
    assert relative_difference(sae.pack(numerical), sae.pack(grads)) < 1e-9

    # Each block on its own. Central differences err by about eps^2 f'''/6;
    # for the sigmoid decoder's b2 that is about 1e-9 relative at eps = 1e-4
    # (f'''/f' = -1/2 at a3 = 1/2), so the per-block check uses eps = 1e-5.
    numerical = numerical_grads(params, X, 1e-5, **kwargs)
    for name in sae.PARAM_NAMES:
        assert relative_difference(numerical[name], grads[name]) < 1e-9, name


@pytest.mark.parametrize("penalty, decoder", COMBINATIONS)
def test_penalties_are_strong_enough_to_matter(penalty, decoder):
    """Each penalty in the checks above moves the gradient by at least 5%."""
    params, X = make_net(decoder=decoder)
    full = sae.pack(sae.cost_and_grad(params, X, **HYPER, penalty=penalty, decoder=decoder)[1])
    without_decay = dict(HYPER, lam=0.0, penalty=penalty, decoder=decoder)
    without_sparsity = dict(HYPER, beta=0.0, penalty=penalty, decoder=decoder)
    for kwargs in (without_decay, without_sparsity) if penalty != "none" else (without_decay,):
        other = sae.pack(sae.cost_and_grad(params, X, **kwargs)[1])
        assert np.linalg.norm(full - other) > 0.05 * np.linalg.norm(full), kwargs


@pytest.mark.parametrize("penalty, decoder", COMBINATIONS)
def test_vectorized_matches_the_notes_loop(penalty, decoder):
    params, X = make_net(n_visible=7, n_hidden=5, m=9, decoder=decoder, seed=1)
    kwargs = dict(HYPER, penalty=penalty, decoder=decoder)
    cost, grads = sae.cost_and_grad(params, X, **kwargs)
    loop_cost, loop_grads = loop_cost_and_grad(params, X, **kwargs)
    assert cost == pytest.approx(loop_cost, rel=1e-10, abs=0)
    for name in sae.PARAM_NAMES:
        np.testing.assert_allclose(grads[name], loop_grads[name], rtol=1e-10, atol=0, err_msg=name)


@settings(max_examples=100, deadline=None)
@given(
    n_visible=st.integers(1, 6),
    n_hidden=st.integers(1, 5),
    m=st.integers(1, 6),
    seed=st.integers(0, 2**32 - 1),
    penalty=st.sampled_from(sae.PENALTIES),
    decoder=st.sampled_from(sae.DECODERS),
    rho=st.floats(0.01, 0.5),
    beta=st.floats(0.0, 5.0),
    lam=st.floats(0.0, 1.0),
)
def test_gradient_property(n_visible, n_hidden, m, seed, penalty, decoder, rho, beta, lam):
    params, X = make_net(n_visible, n_hidden, m, decoder, seed)
    kwargs = dict(penalty=penalty, decoder=decoder, rho=rho, beta=beta, lam=lam)
    cost, grads = sae.cost_and_grad(params, X, **kwargs)

    loop_cost, loop_grads = loop_cost_and_grad(params, X, **kwargs)
    assert cost == pytest.approx(loop_cost, rel=1e-10, abs=0)
    for name in sae.PARAM_NAMES:
        np.testing.assert_allclose(grads[name], loop_grads[name], rtol=1e-10, atol=1e-15)

    # eps = 1e-5, not the notes' 1e-4: over random nets the truncation error
    # at 1e-4 reaches a few 1e-9 (e.g. reconstruction only, saturated units).
    numerical = numerical_grads(params, X, 1e-5, **kwargs)
    assert relative_difference(sae.pack(numerical), sae.pack(grads)) < 1e-9


# ---------------------------------------------------------------------------
# The cost and its parts
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("penalty, decoder", COMBINATIONS)
def test_without_penalties_the_cost_is_the_plain_reconstruction(penalty, decoder):
    params, X = make_net(decoder=decoder)
    a2 = expit(X @ params["W1"].T + params["b1"])
    z3 = a2 @ params["W2"].T + params["b2"]
    a3 = expit(z3) if decoder == "sigmoid" else z3
    expected = sum(0.5 * np.sum((a3[i] - X[i]) ** 2) for i in range(len(X))) / len(X)
    cost, _ = sae.cost_and_grad(params, X, penalty=penalty, decoder=decoder,
                                rho=0.1, beta=0.0, lam=0.0)
    assert cost == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("penalty, decoder", COMBINATIONS)
def test_cost_terms_sum_to_the_cost(penalty, decoder):
    params, X = make_net(decoder=decoder)
    kwargs = dict(HYPER, penalty=penalty, decoder=decoder)
    terms = sae.cost_terms(params, X, **kwargs)
    cost, _ = sae.cost_and_grad(params, X, **kwargs)
    parts = terms["reconstruction"] + terms["weight_decay"] + terms["sparsity"]
    assert terms["cost"] == pytest.approx(parts, rel=1e-14)
    assert terms["cost"] == pytest.approx(cost, rel=1e-12)
    assert terms["weight_decay"] == pytest.approx(
        0.05 * (np.sum(params["W1"] ** 2) + np.sum(params["W2"] ** 2)), rel=1e-12)
    assert (terms["sparsity"] == 0) == (penalty == "none")
    assert terms["mean_rho_hat"] == pytest.approx(sae.encode(params, X).mean(), rel=1e-12)
    assert all(isinstance(v, float) for v in terms.values())


def test_kl_divergence_is_nonnegative():
    rho = np.linspace(0.005, 0.995, 67)[:, None]
    rho_hat = np.linspace(0.001, 0.999, 1000)[None, :]
    # The two grids never meet; next to rho, KL is O((rho_hat - rho)^2) > 0.
    assert np.min(np.abs(rho - rho_hat)) > 1e-6
    kl = sae.kl_divergence(rho, rho_hat)
    assert np.all(np.isfinite(kl)) and np.all(kl > 0)


@settings(max_examples=200, deadline=None)
@given(rho=st.floats(1e-6, 1 - 1e-6))
def test_kl_divergence_is_exactly_zero_at_rho(rho):
    assert sae.kl_divergence(rho, np.array([rho]))[0] == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kl_term_stays_finite_when_units_saturate(dtype):
    params, X = make_net(dtype=dtype)
    params["b1"][:2] = [1e4, -1e4]                 # unit 0 always on, unit 1 always off
    rho_hat = sae.encode(params, X).mean(axis=0)
    assert rho_hat[0] == 1 and rho_hat[1] == 0       # exactly, in floating point
    for decoder in sae.DECODERS:
        cost, grads = sae.cost_and_grad(params, X, penalty="kl", rho=0.1, beta=3.0,
                                        decoder=decoder)
        terms = sae.cost_terms(params, X, penalty="kl", rho=0.1, beta=3.0, decoder=decoder)
        assert math.isfinite(cost) and math.isfinite(terms["sparsity"])
        assert terms["sparsity"] > 3.0 * 0.9 * math.log(0.9 / 1e-3)     # large, not clipped to 0
        assert all(np.all(np.isfinite(g)) for g in grads.values())


def test_clip_rho_hat_bounds():
    for dtype in (np.float32, np.float64):
        eps = np.finfo(dtype).eps
        r = sae.clip_rho_hat(np.array([0.0, 0.3, 1.0], dtype=dtype))
        assert r.dtype == dtype
        assert r.tolist() == [eps, dtype(0.3), dtype(1 - eps)]


# ---------------------------------------------------------------------------
# Shapes, dtypes, initialization, packing
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("penalty, decoder", COMBINATIONS)
def test_grads_have_the_params_shapes_and_dtype(dtype, penalty, decoder):
    params, X = make_net(dtype=dtype, decoder=decoder)
    X = X.astype(np.float64)                          # converted on entry, no upcast
    cost, grads = sae.cost_and_grad(params, X, penalty=penalty, decoder=decoder)
    assert type(cost) is float
    assert list(grads) == list(sae.PARAM_NAMES)
    for name in sae.PARAM_NAMES:
        assert grads[name].shape == params[name].shape
        assert grads[name].dtype == params[name].dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("penalty, decoder", COMBINATIONS)
def test_inputs_are_not_modified(dtype, penalty, decoder):
    """The in-place steps inside cost_and_grad touch only its own arrays."""
    params, X = make_net(dtype=dtype, decoder=decoder)
    before = {k: v.copy() for k, v in params.items()}, X.copy()
    sae.cost_and_grad(params, X, **HYPER, penalty=penalty, decoder=decoder)
    sae.cost_terms(params, X, **HYPER, penalty=penalty, decoder=decoder)
    sae.decode(params, sae.encode(params, X), decoder=decoder)
    for name in sae.PARAM_NAMES:
        np.testing.assert_array_equal(params[name], before[0][name])
    np.testing.assert_array_equal(X, before[1])


@pytest.mark.parametrize("penalty, decoder", COMBINATIONS)
def test_float32_agrees_with_float64(penalty, decoder):
    params64, X64 = make_net(decoder=decoder)
    params32 = {k: v.astype(np.float32) for k, v in params64.items()}
    X32 = X64.astype(np.float32)
    kwargs = dict(HYPER, penalty=penalty, decoder=decoder)
    # Both on the same float32-representable inputs.
    cost64, grads64 = sae.cost_and_grad({k: v.astype(np.float64) for k, v in params32.items()},
                                        X32.astype(np.float64), **kwargs)
    cost32, grads32 = sae.cost_and_grad(params32, X32, **kwargs)
    assert cost32 == pytest.approx(cost64, rel=1e-6)
    for name in sae.PARAM_NAMES:
        scale = np.max(np.abs(grads64[name]))
        np.testing.assert_allclose(grads32[name], grads64[name], rtol=1e-5, atol=1e-6 * scale,
                                   err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_init_params_range_shapes_and_zero_biases(dtype):
    n_visible, n_hidden = 30, 20
    params = sae.init_params(n_visible, n_hidden, rng=0, dtype=dtype)
    r = dtype(np.sqrt(6 / (n_visible + n_hidden + 1)))
    assert {k: v.shape for k, v in params.items()} == sae.param_shapes(n_visible, n_hidden)
    for name in ("W1", "W2"):
        W = params[name]
        assert W.dtype == dtype
        assert np.all(np.abs(W) <= r)
        assert W.max() > 0.9 * r and W.min() < -0.9 * r      # the whole range is used
    for name in ("b1", "b2"):
        assert params[name].dtype == dtype and not np.any(params[name])


def test_init_params_is_reproducible_from_int_or_generator():
    a = sae.init_params(5, 3, rng=42)
    b = sae.init_params(5, 3, rng=np.random.default_rng(42))
    c = sae.init_params(5, 3, rng=43)
    for name in sae.PARAM_NAMES:
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a["W1"], c["W1"])


def test_pack_unpack_round_trip_order_and_views():
    n_visible, n_hidden = 5, 3
    params, _ = make_net(n_visible, n_hidden)
    theta = sae.pack(params)
    assert theta.shape == (2 * n_visible * n_hidden + n_hidden + n_visible,)
    # The documented order: [W1, W2, b1, b2], each row-major.
    expected = np.concatenate([params[k].ravel() for k in ("W1", "W2", "b1", "b2")])
    np.testing.assert_array_equal(theta, expected)
    unpacked = sae.unpack(theta, n_visible, n_hidden)
    for name in sae.PARAM_NAMES:
        np.testing.assert_array_equal(unpacked[name], params[name])
        assert unpacked[name].dtype == params[name].dtype
        assert np.shares_memory(unpacked[name], theta), name
    unpacked["b1"][0] = 123.0                         # a view writes through
    assert 123.0 in theta
    np.testing.assert_array_equal(sae.pack(unpacked), theta)


# ---------------------------------------------------------------------------
# The sigmoid
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_is_exact_and_silent_for_large_arguments(dtype):
    z = np.array([-1e4, -1e3, -745.0, -100.0, -88.0, -30.0, -1.0, -1e-8, 0.0,
                  1e-8, 1.0, 30.0, 88.0, 100.0, 745.0, 1e3, 1e4], dtype=dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        f = sae.sigmoid(z)
        in_place = z.copy()
        fast.sigmoid_into(in_place, in_place)
    assert f.dtype == dtype
    np.testing.assert_array_equal(in_place, f)
    # The tanh form 0.5 tanh(z/2) + 0.5 is accurate to within eps in absolute
    # terms (its docstring); relative accuracy is lost only where f(z) < eps.
    eps = np.finfo(dtype).eps
    np.testing.assert_allclose(f, expit(z), rtol=4 * eps, atol=eps)
    assert f[0] == 0.0 and f[-1] == 1.0 and f[8] == 0.5
    assert np.all(np.diff(f) >= 0) and np.all((f >= 0) & (f <= 1))


# ---------------------------------------------------------------------------
# Bad input: clear errors that name the argument
# ---------------------------------------------------------------------------

P, X0 = make_net(n_visible=3, n_hidden=2, m=4)


def _replace(name, value):
    return {**P, name: value}


BAD_COST_CALLS = [
    # (case, params, X, keyword arguments, exception, argument named in the message)
    ("X 1-D", P, X0[0], {}, ValueError, "X"),
    ("X wrong width", P, X0[:, :2], {}, ValueError, "X"),
    ("X empty", P, X0[:0], {}, ValueError, "X"),
    ("X with NaN", P, np.where(X0 > 0.5, np.nan, X0), {}, ValueError, "X"),
    ("X outside [0, 1], sigmoid", P, X0 + 1, {}, ValueError, "X"),
    ("X of strings", P, np.full((4, 3), "a"), {}, TypeError, "X"),
    ("penalty unknown", P, X0, {"penalty": "L2"}, ValueError, "penalty"),
    ("decoder unknown", P, X0, {"decoder": "relu"}, ValueError, "decoder"),
    ("rho 0", P, X0, {"rho": 0.0}, ValueError, "rho"),
    ("rho 1.5", P, X0, {"rho": 1.5}, ValueError, "rho"),
    ("rho a string", P, X0, {"rho": "0.1"}, TypeError, "rho"),
    ("beta negative", P, X0, {"beta": -1.0}, ValueError, "beta"),
    ("lam negative", P, X0, {"lam": -1e-4}, ValueError, "lam"),
    ("lam None", P, X0, {"lam": None}, TypeError, "lam"),
    ("params a list", list(P.values()), X0, {}, TypeError, "params"),
    ("params without b2", {k: P[k] for k in ("W1", "b1", "W2")}, X0, {}, ValueError, "params"),
    ("b1 wrong shape", _replace("b1", np.zeros(3)), X0, {}, ValueError, "params['b1']"),
    ("W1 integer", _replace("W1", np.zeros((2, 3), dtype=int)), X0, {}, TypeError, "params['W1']"),
    ("b2 other dtype", _replace("b2", P["b2"].astype(np.float32)), X0, {}, TypeError,
     "params['b2']"),
    ("W2 a list", _replace("W2", P["W2"].tolist()), X0, {}, TypeError, "params['W2']"),
]


@pytest.mark.parametrize("case, params, X, kwargs, error, name", BAD_COST_CALLS,
                         ids=[c[0] for c in BAD_COST_CALLS])
def test_cost_and_grad_rejects_bad_input_by_name(case, params, X, kwargs, error, name):
    with pytest.raises(error, match="^" + re.escape(name + ":")) as excinfo:
        sae.cost_and_grad(params, X, **kwargs)
    for value in kwargs.values():                    # the value received is quoted
        assert repr(value) in str(excinfo.value)


BAD_INIT_CALLS = [
    ("n_visible 0", (0, 3), {}, ValueError, "n_visible"),
    ("n_hidden float", (4, 2.5), {}, TypeError, "n_hidden"),
    ("n_visible bool", (True, 3), {}, TypeError, "n_visible"),
    ("dtype int32", (4, 3), {"dtype": np.int32}, TypeError, "dtype"),
    ("dtype not a dtype", (4, 3), {"dtype": "float65"}, TypeError, "dtype"),
    ("rng a string", (4, 3), {"rng": "seed"}, TypeError, "rng"),
    ("rng a float", (4, 3), {"rng": 1.5}, TypeError, "rng"),
]


@pytest.mark.parametrize("case, args, kwargs, error, name", BAD_INIT_CALLS,
                         ids=[c[0] for c in BAD_INIT_CALLS])
def test_init_params_rejects_bad_input_by_name(case, args, kwargs, error, name):
    with pytest.raises(error, match="^" + re.escape(name + ":")):
        sae.init_params(*args, **kwargs)


# Issue 20: a malformed model name in a model file selects no model.
@pytest.mark.parametrize("name", [5, None, "", ["topk"]])
def test_a_malformed_model_name_is_refused_on_save_and_on_load(tmp_path, name):
    import json

    from saelab.files.model_file import load_model, model_name, save_model
    from saelab.training.autoencoder import SparseAutoencoder
    from saelab.training.loading import load_autoencoder

    params = sae.init_params(4, 3, rng=0)
    with pytest.raises(ValueError, match="hyperparameters: model="):
        save_model(tmp_path / "refused.npz", params, {"model": name})
    assert not (tmp_path / "refused.npz").exists()
    with pytest.raises(ValueError, match=r"hyperparameters\['model'\]: expected a model name"):
        model_name({"model": name})
    path = save_model(tmp_path / "good.npz", params, {"model": "topk"})
    with np.load(path) as archive:                           # a file written by something else
        members = {key: archive[key] for key in archive.files}
    members["hyperparameters"] = np.array(json.dumps({"model": name}))
    forged = tmp_path / "forged.npz"
    np.savez(forged, **members)
    for load in (load_model, SparseAutoencoder.load, load_autoencoder):
        with pytest.raises(ValueError, match="model"):
            load(forged)


def test_clip_rho_hat_refuses_a_sum_where_the_notes_take_the_mean():
    """From a student's read-through: rho_hat = a2.sum(axis=0) was clipped to 1 - eps
    silently, and the check then blamed W1 and b1 with errors of 1e15."""
    params = sae.init_params(6, 4, rng=0)
    X = np.random.default_rng(0).random((10, 6))
    a2 = sae.encode(params, X)
    with pytest.raises(ValueError, match=r"rho_hat: expected average activations in \[0, 1\].*sum"):
        sae.clip_rho_hat(a2.sum(axis=0))
    np.testing.assert_array_equal(sae.clip_rho_hat(a2.mean(axis=0)), a2.mean(axis=0))
    eps = np.finfo(np.float64).eps
    np.testing.assert_array_equal(sae.clip_rho_hat(np.array([0.0, 1.0])), [eps, 1 - eps])
