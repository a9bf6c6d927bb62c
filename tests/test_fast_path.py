"""The tuned fast.cost_and_grad: equal to the readable one, block boundaries, memory, dtype.

fast.cost_and_grad does its elementwise work in blocks of rows (BLOCK_BYTES)
and keeps only a2 and delta2 besides one array as large as X. These tests
hold it equal to the readable sparse_autoencoder.cost_and_grad and to the
per-example loop, set the block size small so that blocks end in awkward
places, and measure the peak memory of one call with tracemalloc (NumPy
reports its array buffers to it). No timing here: see benchmarks/bench.py.
"""

import itertools

import numpy as np
import pytest

import fast
import sparse_autoencoder as sae
from saelab.checks import validation
from benchmarks.bench import peak_extra_bytes
from gradcheck import numerical_gradient, relative_difference
from reference import loop_cost_and_grad

COMBOS = list(itertools.product(sae.PENALTIES, sae.DECODERS))
HYPER = dict(rho=0.1, beta=3.0, lam=1e-3)


def make_problem(m, n_visible, n_hidden, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    params = sae.init_params(n_visible, n_hidden, rng=rng, dtype=dtype)
    params["b1"][:] = 0.1 * rng.standard_normal(n_hidden)
    params["b2"][:] = 0.1 * rng.standard_normal(n_visible)
    X = rng.random((m, n_visible)).astype(dtype)
    return params, X


def block_bytes_for(rows, n_visible, dtype=np.float64):
    """A BLOCK_BYTES that makes blocks of ``rows`` rows."""
    return rows * n_visible * np.dtype(dtype).itemsize


def assert_matches_loop(params, X, penalty, decoder, rtol=1e-10):
    cost, grads = fast.cost_and_grad(params, X, penalty=penalty, decoder=decoder, **HYPER)
    ref_cost, ref_grads = loop_cost_and_grad(params, X, penalty=penalty, decoder=decoder, **HYPER)
    assert cost == pytest.approx(ref_cost, rel=rtol, abs=0)
    for name in sae.PARAM_NAMES:
        scale = np.max(np.abs(ref_grads[name]))
        np.testing.assert_allclose(grads[name], ref_grads[name], rtol=rtol, atol=rtol * scale,
                                   err_msg=name)


# Odd sizes: m smaller than a block, m not a multiple of the block, one row,
# a single block, and n_visible / n_hidden that are not powers of two.
SIZES = [(1, 7, 5, 4), (3, 7, 5, 4), (23, 7, 5, 4), (50, 13, 3, 7), (97, 31, 11, 1000)]


@pytest.mark.parametrize("m,n_visible,n_hidden,rows_per_block", SIZES)
@pytest.mark.parametrize("penalty,decoder", COMBOS)
def test_fast_equals_readable_in_float64(monkeypatch, penalty, decoder, m, n_visible, n_hidden,
                                         rows_per_block):
    params, X = make_problem(m, n_visible, n_hidden, seed=m + n_hidden)
    monkeypatch.setattr(fast, "BLOCK_BYTES", block_bytes_for(rows_per_block, n_visible))
    cost, grads = sae.cost_and_grad(params, X, penalty=penalty, decoder=decoder, **HYPER)
    fast_cost, fast_grads = fast.cost_and_grad(params, X, penalty=penalty, decoder=decoder, **HYPER)
    assert fast_cost == pytest.approx(cost, rel=1e-12, abs=0)
    for name in sae.PARAM_NAMES:
        assert fast_grads[name].dtype == np.float64
        np.testing.assert_allclose(fast_grads[name], grads[name], rtol=1e-12,
                                   atol=1e-12 * np.max(np.abs(grads[name])), err_msg=name)
    terms = sae.cost_terms(params, X, penalty=penalty, decoder=decoder, **HYPER)
    fast_terms = fast.cost_terms(params, X, penalty=penalty, decoder=decoder, **HYPER)
    assert terms.keys() == fast_terms.keys()
    for name in terms:
        assert fast_terms[name] == pytest.approx(terms[name], rel=1e-12, abs=1e-300), name


@pytest.mark.parametrize("m,n_visible,n_hidden,rows_per_block", SIZES)
@pytest.mark.parametrize("penalty,decoder", COMBOS)
def test_fast_equals_readable_in_float32(monkeypatch, penalty, decoder, m, n_visible, n_hidden,
                                         rows_per_block):
    # float32 precision: both are within a few float32 epsilons of the float64
    # result, so of each other; measured against the gradient's largest entry.
    params, X = make_problem(m, n_visible, n_hidden, seed=m + n_hidden, dtype=np.float32)
    monkeypatch.setattr(fast, "BLOCK_BYTES", block_bytes_for(rows_per_block, n_visible, np.float32))
    cost, grads = sae.cost_and_grad(params, X, penalty=penalty, decoder=decoder, **HYPER)
    fast_cost, fast_grads = fast.cost_and_grad(params, X, penalty=penalty, decoder=decoder, **HYPER)
    eps = float(np.finfo(np.float32).eps)
    assert fast_cost == pytest.approx(cost, rel=8 * eps)
    for name in sae.PARAM_NAMES:
        assert grads[name].dtype == fast_grads[name].dtype == np.float32
        np.testing.assert_allclose(fast_grads[name], grads[name], rtol=16 * eps,
                                   atol=16 * eps * np.max(np.abs(grads[name])), err_msg=name)


@pytest.mark.parametrize("penalty,decoder", COMBOS)
@pytest.mark.parametrize("m,rows_per_block", [(1, 1), (2, 1), (7, 3), (10, 5), (23, 4), (23, 100)])
def test_blocks_match_the_loop(monkeypatch, penalty, decoder, m, rows_per_block):
    # m not a multiple of the block (7/3, 23/4), exact multiples (10/5), one row, one block.
    params, X = make_problem(m, 7, 5, seed=m)
    monkeypatch.setattr(fast, "BLOCK_BYTES", block_bytes_for(rows_per_block, 7))
    assert_matches_loop(params, X, penalty, decoder)


def test_row_blocks_cover_every_row_once(monkeypatch):
    monkeypatch.setattr(fast, "BLOCK_BYTES", block_bytes_for(4, 10))
    blocks = fast._row_blocks(23, 10, np.float64)
    assert [(b.start, b.stop) for b in blocks] == [(0, 4), (4, 8), (8, 12), (12, 16), (16, 20), (20, 23)]
    monkeypatch.setattr(fast, "BLOCK_BYTES", 1)             # smaller than a row: one row per block
    assert len(fast._row_blocks(5, 10, np.float64)) == 5


@pytest.mark.parametrize("penalty,decoder", COMBOS)
def test_block_size_does_not_change_the_result(monkeypatch, penalty, decoder):
    params, X = make_problem(50, 12, 6, seed=1)
    results = []
    for rows in (1, 7, 50):
        monkeypatch.setattr(fast, "BLOCK_BYTES", block_bytes_for(rows, 12))
        results.append(fast.cost_and_grad(params, X, penalty=penalty, decoder=decoder, **HYPER))
    (cost, grads), others = results[0], results[1:]
    for other_cost, other_grads in others:
        assert other_cost == pytest.approx(cost, rel=1e-13)
        for name in sae.PARAM_NAMES:
            np.testing.assert_allclose(other_grads[name], grads[name], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("penalty,decoder", COMBOS)
def test_gradient_check_across_block_boundaries(monkeypatch, penalty, decoder):
    monkeypatch.setattr(fast, "BLOCK_BYTES", block_bytes_for(3, 8))
    params, X = make_problem(10, 8, 4, seed=2)
    theta = sae.pack(params)

    def cost(t):
        return fast.cost_and_grad(sae.unpack(t, 8, 4), X, penalty=penalty, decoder=decoder, **HYPER)[0]

    _, grads = fast.cost_and_grad(params, X, penalty=penalty, decoder=decoder, **HYPER)
    assert relative_difference(numerical_gradient(cost, theta), sae.pack(grads)) < 1e-9


def test_unchecked_path_equals_cost_and_grad():
    params, X = make_problem(30, 9, 4, seed=3)
    cost, grads = fast.cost_and_grad(params, X, **HYPER)
    cost2, grads2 = fast.cost_and_grad_unchecked(params, X, "kl", 0.1, 3.0, 1e-3, "sigmoid")
    assert cost2 == cost
    for name in sae.PARAM_NAMES:
        np.testing.assert_array_equal(grads2[name], grads[name])


@pytest.mark.parametrize("penalty,decoder", COMBOS)
def test_cost_terms_agree_with_cost_and_grad(penalty, decoder):
    params, X = make_problem(40, 9, 4, seed=4)
    cost, _ = fast.cost_and_grad(params, X, penalty=penalty, decoder=decoder, **HYPER)
    terms = fast.cost_terms(params, X, penalty=penalty, decoder=decoder, **HYPER)
    assert terms["cost"] == pytest.approx(cost, rel=1e-13)


@pytest.mark.parametrize("penalty,decoder", COMBOS)
def test_terms_returned_with_the_gradient_are_those_of_cost_terms(penalty, decoder):
    # L-BFGS prints these parts of J instead of running cost_terms' forward pass.
    params, X = make_problem(40, 9, 4, seed=6)
    cost, grads = fast.cost_and_grad(params, X, penalty=penalty, decoder=decoder, **HYPER)
    terms, grads2 = fast.cost_terms_and_grad_unchecked(params, X, penalty, 0.1, 3.0, 1e-3, decoder)
    expected = fast.cost_terms(params, X, penalty=penalty, decoder=decoder, **HYPER)
    assert terms["cost"] == cost
    assert terms.keys() == expected.keys()
    for name in expected:
        assert terms[name] == pytest.approx(expected[name], rel=1e-13, abs=1e-300), name
    for name in sae.PARAM_NAMES:
        np.testing.assert_array_equal(grads2[name], grads[name])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_peak_memory_of_one_call_is_at_most_twice_X(dtype):
    # The old version held a3, delta3 and sigmoid temporaries: about 3.4 X.nbytes.
    # Now: one array as large as X (z3 -> delta3), a2 and delta2 (m, n_hidden)
    # (0.25 X.nbytes each at 784 -> 196), a few blocks (BLOCK_BYTES each) and
    # the gradients: about 1.7 X.nbytes at this m. A float64 temporary of X's
    # size in a float32 call alone would be 2 X.nbytes and fail this.
    params, X = make_problem(4000, 784, 196, seed=5, dtype=dtype)
    peak = peak_extra_bytes(lambda: fast.cost_and_grad(params, X))
    assert peak <= 2 * X.nbytes, f"peak extra memory {peak / X.nbytes:.2f} x X.nbytes"


def test_float32_stays_float32_and_agrees_with_float64():
    # 10000 rows: the sums over examples (rho_hat, dJ/db1, dJ/db2) are long
    # enough that adding block rows one after another in float32 shows
    # (about 1e-6 here); accumulated in float64 they stay near 1e-7.
    params, X = make_problem(10000, 64, 25, seed=6)
    params32 = {name: value.astype(np.float32) for name, value in params.items()}
    cost64, grads64 = fast.cost_and_grad(params, X, **HYPER)
    cost32, grads32 = fast.cost_and_grad(params32, X.astype(np.float32), **HYPER)
    assert all(grads32[name].dtype == np.float32 for name in sae.PARAM_NAMES)
    assert cost32 == pytest.approx(cost64, rel=1e-6)
    for name in sae.PARAM_NAMES:
        assert relative_difference(grads32[name], grads64[name]) < 3e-7, name


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bias", [1000.0, -1000.0])
@pytest.mark.parametrize("penalty,decoder", COMBOS)
@pytest.mark.parametrize("cost_and_grad", [sae.cost_and_grad, fast.cost_and_grad], ids=["readable", "fast"])
def test_saturated_units_give_no_warning_and_finite_results(dtype, bias, penalty, decoder, cost_and_grad):
    # pytest.ini turns warnings into errors, so an overflow warning fails here.
    params, X = make_problem(9, 6, 4, seed=7, dtype=dtype)
    params["b1"][:] = bias
    params["b2"][:] = bias
    cost, grads = cost_and_grad(params, X, penalty=penalty, decoder=decoder)
    assert np.isfinite(cost)
    assert all(np.all(np.isfinite(grads[name])) for name in sae.PARAM_NAMES)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_tanh_form_accuracy_and_limits(dtype):
    z = np.linspace(-40, 40, 20001).astype(dtype)
    exact = 1 / (1 + np.exp(-z.astype(np.longdouble)))       # no overflow for |z| <= 40
    eps = np.finfo(dtype).eps
    a = sae.sigmoid(z)
    assert a.dtype == dtype
    assert np.max(np.abs(a - exact)) <= eps                   # absolute error within one epsilon
    assert np.max(np.abs(a * (1 - a) - exact * (1 - exact))) <= eps   # f'(z) likewise
    big = np.array([-np.inf, -1e30, -1000, 1000, 1e30, np.inf], dtype)
    np.testing.assert_array_equal(sae.sigmoid(big), [0, 0, 0, 1, 1, 1])
    out = z.copy()
    assert fast.sigmoid_into(out, out) is out                 # the in-place form gives the same bits
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_one_pass_range_test_and_the_exact_check_agree(dtype):
    params = sae.init_params(3, 2, rng=0, dtype=dtype)
    fine = [0.0, 1.0, 0.5, -0.0, np.finfo(dtype).tiny]
    bad = [np.nan, np.inf, -np.inf, -1e-30, np.nextafter(dtype(1), dtype(2)), 2.0]
    for value in fine:
        X = np.full((2, 3), 0.25, dtype)
        X[1, 2] = value
        assert validation.check_X(X, params) is X
    for value in bad:
        X = np.full((2, 3), 0.25, dtype)
        X[1, 2] = value
        assert not validation.in_unit_interval(X)
        with pytest.raises(ValueError, match="^X: "):
            validation.check_X(X, params)
    strided = np.asfortranarray(np.full((4, 3), 0.5, dtype))[:, ::2]
    assert validation.in_unit_interval(strided)


# --- today's SAEs: fast.relu_l1_cost_and_grad and fast.topk_cost_and_grad ---------


def modern_problem(m, n_visible, n_hidden, seed, dtype=np.float64):
    import modern_sae

    rng = np.random.default_rng(seed)
    X = (rng.random((m, n_visible)) ** 2).astype(dtype)
    params = modern_sae.init_topk(n_visible, n_hidden, rng=rng, dtype=dtype, X=X)
    params["b1"][:] = 0.1 * rng.standard_normal(n_hidden)
    return params, X


MODERN_CASES = [
    ("relu_l1", dict(l1=0.3)), ("relu_l1", dict(l1=0.0, lam=0.01)),
    ("topk", dict(k=1)), ("topk", dict(k=5, lam=0.01)), ("topk", dict(k=13)),
    ("topk_auxk", dict(k=4, aux_k=3, alpha=0.5)), ("topk_auxk", dict(k=4, aux_k=13, lam=0.01)),          # aux_k above the 5 dead
    ("topk_auxk", dict(k=4, aux_k=3, alpha=0.5, aux_scale=2.5)),     # a fixed c, as training passes it
]


def modern_call(module, name, params, X, settings, dead):
    if name == "relu_l1":
        return module.relu_l1_cost_and_grad(params, X, **settings)
    if name == "topk_auxk":
        settings = {**settings, "dead": dead}
    return module.topk_cost_and_grad(params, X, **settings)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, settings", MODERN_CASES)
def test_tuned_modern_models_equal_the_readable_ones(name, settings, dtype):
    import modern_sae

    params, X = modern_problem(37, 11, 13, seed=len(name) + len(settings), dtype=dtype)
    dead = np.arange(13) % 3 == 0
    cost, grads = modern_call(fast, name, params, X, settings, dead)
    expected_cost, expected = modern_call(modern_sae, name, params, X, settings, dead)
    rtol = 1e-12 if dtype == np.float64 else 2e-5
    assert cost == pytest.approx(expected_cost, rel=rtol)
    for key in expected:
        assert grads[key].dtype == dtype and grads[key].shape == expected[key].shape
        scale = np.abs(expected[key]).max()
        np.testing.assert_allclose(grads[key], expected[key], rtol=0, atol=rtol * 10 * scale)


def test_tuned_topk_breaks_ties_as_the_readable_one():
    import modern_sae

    params, X = modern_problem(8, 6, 7, seed=3)
    X[:] = 0.5                                   # every row the same, and W1 rows repeated:
    params["W1"][3] = params["W1"][2]            # latents 2 and 3 tie on every row
    params["b1"][3] = params["b1"][2]
    params["b2"][:] = 0.0
    z2 = X @ params["W1"].T + params["b1"]
    k = int(np.sum(z2[0] > z2[0, 2])) + 1        # the tie sits exactly at the k-th place
    np.testing.assert_array_equal(fast._topk_select(z2, k), modern_sae.topk_mask(z2, k))
    cost, grads = fast.topk_cost_and_grad(params, X, k=k)
    expected_cost, expected = modern_sae.topk_cost_and_grad(params, X, k=k)
    assert cost == pytest.approx(expected_cost, rel=1e-12)
    for key in expected:
        np.testing.assert_allclose(grads[key], expected[key], rtol=1e-12, atol=1e-15)


def test_tuned_modern_models_check_their_arguments_and_report_firing():
    params, X = modern_problem(10, 6, 5, seed=4)
    with pytest.raises(ValueError, match="k"):
        fast.topk_cost_and_grad(params, X, k=6)
    with pytest.raises(ValueError, match="l1"):
        fast.relu_l1_cost_and_grad(params, X, l1=-1.0)
    params["b1"][0] = -1e6                       # latent 0 can never fire
    _, _, fired = fast.relu_l1_unchecked(params, X, 0.1, 0.0)
    assert not fired[0] and fired[1:].any()
