"""modern_sae.py: ReLU + L1 and TopK (+ AuxK) against the per-example loops, against
central differences away from the kinks, the frozen selections, the unit-norm decoder,
AuxK's relative weight, the geometric median, initialization and validation."""

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import gradcheck
import modern_sae as ms
import sparse_autoencoder as sae
from gradcheck import numerical_gradient, relative_difference
from modern_sae import loop_relu_l1_cost_and_grad, loop_topk_cost_and_grad


def make_net(n_visible=6, n_hidden=5, m=7, seed=0, dtype=np.float64, unit=True):
    """Unit-norm decoder columns (or not), an untied noisy encoder, nonzero biases, X normal."""
    rng = np.random.default_rng(seed)
    W2 = rng.standard_normal((n_visible, n_hidden))
    W2 = ms.normalize_decoder(W2) if unit else W2
    params = {
        "W1": W2.T + 0.3 * rng.standard_normal((n_hidden, n_visible)),
        "b1": rng.uniform(-0.3, 0.3, n_hidden),
        "W2": W2,
        "b2": rng.uniform(-0.3, 0.3, n_visible),
    }
    X = rng.standard_normal((m, n_visible))
    return {k: v.astype(dtype) for k, v in params.items()}, X.astype(dtype)


def numerical(f, params, eps):
    """Central differences of the scalar f(params), as a params-shaped dict."""
    n_hidden, n_visible = params["W1"].shape
    theta = sae.pack(params)
    grad = numerical_gradient(lambda t: f(sae.unpack(t, n_visible, n_hidden)), theta, eps)
    return sae.unpack(grad, n_visible, n_hidden)


def assert_same(cost_a, grads_a, cost_b, grads_b, rtol=1e-10):
    assert cost_a == pytest.approx(cost_b, rel=rtol)
    for name in sae.PARAM_NAMES:
        scale = max(1.0, float(np.abs(grads_b[name]).max(initial=0.0)))
        np.testing.assert_allclose(grads_a[name], grads_b[name], rtol=rtol, atol=1e-13 * scale)


nets = st.builds(
    lambda n_visible, n_hidden, m, seed, unit: (n_visible, n_hidden, m, seed, unit),
    st.integers(1, 6), st.integers(1, 7), st.integers(2, 6), st.integers(0, 2**32 - 1),
    st.booleans())


# ---------------------------------------------------------------------------
# The vectorized models against the per-example loops (rtol 1e-10)
# ---------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(net=nets, l1=st.floats(0, 3), lam=st.sampled_from([0.0, 0.05]))
def test_relu_l1_matches_the_loop(net, l1, lam):
    n_visible, n_hidden, m, seed, unit = net
    params, X = make_net(n_visible, n_hidden, m, seed, unit=unit)
    assert_same(*ms.relu_l1_cost_and_grad(params, X, l1=l1, lam=lam),
                *loop_relu_l1_cost_and_grad(params, X, l1=l1, lam=lam))


@settings(max_examples=40, deadline=None)
@given(net=nets, data=st.data(), lam=st.sampled_from([0.0, 0.05]))
def test_topk_matches_the_loop(net, data, lam):
    n_visible, n_hidden, m, seed, unit = net
    params, X = make_net(n_visible, n_hidden, m, seed, unit=unit)
    k = data.draw(st.integers(1, n_hidden), label="k")
    assert_same(*ms.topk_cost_and_grad(params, X, k=k, lam=lam),
                *loop_topk_cost_and_grad(params, X, k=k, lam=lam))


@settings(max_examples=40, deadline=None)
@given(net=nets, data=st.data(), alpha=st.floats(0, 2),
       aux_scale=st.one_of(st.none(), st.floats(0, 5)))
def test_topk_with_auxk_matches_the_loop(net, data, alpha, aux_scale):
    n_visible, n_hidden, m, seed, unit = net
    params, X = make_net(n_visible, n_hidden, m, seed, unit=unit)
    k = data.draw(st.integers(1, n_hidden), label="k")
    aux_k = data.draw(st.integers(1, n_hidden), label="aux_k")
    dead = np.array(data.draw(st.lists(st.booleans(), min_size=n_hidden, max_size=n_hidden),
                              label="dead"))
    kwargs = dict(k=k, aux_k=aux_k, alpha=alpha, dead=dead, aux_scale=aux_scale)
    assert_same(*ms.topk_cost_and_grad(params, X, **kwargs), *loop_topk_cost_and_grad(params, X, **kwargs))


# ---------------------------------------------------------------------------
# Gradients against central differences, away from the kinks, selections frozen
# ---------------------------------------------------------------------------

EPS = 1e-6


def _frozen_objective(params, X, model, k, aux_k, alpha, dead):
    """J with the selections and AuxK's e frozen at params, and a record of crossed kinks."""
    encoder = ms.relu_preactivations if model == "relu_l1" else ms.preactivations
    z2 = encoder(params, X)
    frozen = {"positive": z2 > 0, "encoder": encoder}
    if model != "relu_l1":
        frozen["mask"] = ms.topk_mask(z2, k)
    settings = dict(k=k, mask=ms.topk_mask(ms.preactivations(params, X), k))
    if aux_k is not None:
        frozen["aux_mask"] = ms.auxk_mask(z2, dead, aux_k)
        x_hat = ms.decode_linear(params, frozen["mask"] * np.maximum(z2, 0))
        settings.update(aux_k=aux_k, alpha=alpha, dead=dead, aux_mask=frozen["aux_mask"],
                        aux_target=X - x_hat)
    crossed = []

    def cost(p):
        crossed.append(gradcheck._kinks_crossed(p, X, frozen, k, aux_k, dead))
        if model == "relu_l1":
            return ms.relu_l1_cost_and_grad(p, X, l1=0.7)[0]
        return ms.topk_cost_and_grad(p, X, **settings)[0]

    return cost, crossed


@settings(max_examples=30, deadline=None)
@given(net=nets, data=st.data(), model=st.sampled_from(["relu_l1", "topk", "auxk"]))
def test_gradients_match_central_differences_away_from_kinks(net, data, model):
    n_visible, n_hidden, m, seed, unit = net
    params, X = make_net(n_visible, n_hidden, m, seed, unit=unit)
    k = data.draw(st.integers(1, n_hidden), label="k")
    aux_k = data.draw(st.integers(1, n_hidden), label="aux_k") if model == "auxk" else None
    dead = np.arange(n_hidden) % 2 == 1
    assume(model != "auxk" or dead.any())
    margins = gradcheck.kink_margins(params, X, k=k, aux_k=min(aux_k or 1, max(dead.sum(), 1)),
                                     dead=dead if dead.any() else ~dead, eps=EPS)
    wanted = {"relu_l1": ["relu"], "topk": ["topk_all", "topk_gap"],
              "auxk": ["topk_all", "topk_gap", "aux_gap"]}[model]
    assume(all(margins.get(name, np.inf) > 10 * margins["move"] for name in wanted))

    cost, crossed = _frozen_objective(params, X, "relu_l1" if model == "relu_l1" else "topk",
                                      k, aux_k, 0.5, dead)
    if model == "relu_l1":
        _, grads = ms.relu_l1_cost_and_grad(params, X, l1=0.7)
    else:
        _, grads = ms.topk_cost_and_grad(params, X, k=k, aux_k=aux_k, alpha=0.5, dead=dead)
    num = numerical(cost, params, EPS)
    assert not any(crossed), "a perturbation crossed a kink despite the margins"
    flat = lambda g: np.concatenate([np.ravel(g[n]) for n in sae.PARAM_NAMES])  # noqa: E731
    assert relative_difference(flat(num), flat(grads)) < 1e-7


def test_frozen_mask_is_the_same_function_at_the_point():
    params, X = make_net()
    z2 = ms.preactivations(params, X)
    dead = np.array([False, True, False, True, True])
    plain = ms.topk_cost_and_grad(params, X, k=2, aux_k=2, alpha=0.5, dead=dead)
    frozen = ms.topk_cost_and_grad(params, X, k=2, aux_k=2, alpha=0.5, dead=dead,
                                   mask=ms.topk_mask(z2, 2), aux_mask=ms.auxk_mask(z2, dead, 2))
    assert_same(*plain, *frozen, rtol=0)


def test_auxk_holds_e_constant():
    """The AuxK gradient is that of the cost with e frozen, not of the cost as it moves."""
    params, X = make_net(seed=3)
    dead = np.array([False, False, True, True, True])
    settings = dict(k=2, aux_k=2, alpha=1.0, dead=dead)
    _, grads = ms.topk_cost_and_grad(params, X, **settings)
    cost_frozen, _ = _frozen_objective(params, X, "topk", 2, 2, 1.0, dead)
    held = numerical(cost_frozen, params, 1e-6)
    moving = numerical(lambda p: ms.topk_cost_and_grad(p, X, **settings)[0], params, 1e-6)
    flat = lambda g: np.concatenate([np.ravel(g[n]) for n in sae.PARAM_NAMES])  # noqa: E731
    assert relative_difference(flat(held), flat(grads)) < 1e-7
    assert relative_difference(flat(moving), flat(grads)) > 1e-3


def test_a_check_across_a_kink_is_refused(monkeypatch):
    """With no margin required and a huge step, perturbations cross kinks: KinkCrossed."""
    monkeypatch.setattr(gradcheck, "MARGIN_FACTOR", 0)
    stage = gradcheck.ModernStage("TopK", "topk", dict(k=3), step_factor=2000.0)   # eps 0.2
    with pytest.raises(gradcheck.KinkCrossed, match="passes changed the selection"):
        stage.check(None, None, None, gradcheck.EPS)
    (_, check), = gradcheck.run_stages(None, None, None, [stage])
    assert check.reason.startswith("KinkCrossed:") and gradcheck.failing_stages([(stage, check)])


def test_the_gradcheck_net_keeps_its_margins():
    params, X, seed = gradcheck.make_modern_problem(eps=gradcheck.EPS * gradcheck.MODERN_STEP_FACTOR)
    assert seed == 0
    margins = gradcheck.kink_margins(params, X, k=3, aux_k=2,
                                     dead=np.arange(8) >= 4, eps=1e-5)
    assert min(v for name, v in margins.items() if name != "move") >= 100 * margins["move"]
    for stage in gradcheck.MODERN_STAGES:
        assert stage.check(None, None, None).relative_difference < 1e-9


# ---------------------------------------------------------------------------
# The unit-norm decoder
# ---------------------------------------------------------------------------


def test_projected_gradient_is_the_derivative_of_j_of_normalized_w2():
    params, X = make_net(seed=1)
    k = 2

    def j_of_normalized(p):
        return ms.topk_cost_and_grad(dict(p, W2=ms.normalize_decoder(p["W2"])), X, k=k,
                                     mask=ms.topk_mask(ms.preactivations(params, X), k))[0]

    _, grads = ms.topk_cost_and_grad(params, X, k=k)
    projected = ms.project_decoder_grad(params["W2"], grads["W2"])
    num = numerical(j_of_normalized, params, 1e-6)
    assert relative_difference(num["W2"], projected) < 1e-7
    assert relative_difference(num["W2"], grads["W2"]) > 1e-3      # the raw one is not it
    np.testing.assert_allclose(np.sum(params["W2"] * projected, axis=0), 0, atol=1e-14)


def test_normalize_decoder():
    W2 = np.array([[3.0, 0.0, 1.0], [4.0, 0.0, 0.0]])
    unit = ms.normalize_decoder(W2)
    np.testing.assert_allclose(unit, [[0.6, 0.0, 1.0], [0.8, 0.0, 0.0]])
    assert unit is not W2 and W2[0, 0] == 3.0                   # a new array
    np.testing.assert_array_equal(ms.column_norms(W2), [5.0, 0.0, 1.0])
    projected = ms.project_decoder_grad(W2, np.ones_like(W2))
    np.testing.assert_allclose(projected, [[0.16, 1.0, 0.0], [-0.12, 1.0, 1.0]])   # g - (u . g) u


def test_relu_l1_with_a_zero_decoder_column_stays_finite():
    params, X = make_net(unit=False)
    params["W2"][:, 1] = 0.0
    cost, grads = ms.relu_l1_cost_and_grad(params, X, l1=1.0)
    assert np.isfinite(cost) and all(np.all(np.isfinite(g)) for g in grads.values())
    assert_same(cost, grads, *loop_relu_l1_cost_and_grad(params, X, l1=1.0))


# ---------------------------------------------------------------------------
# Selection, encoding, the parts of J
# ---------------------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(z2=st.lists(st.lists(st.integers(-3, 3), min_size=5, max_size=5), min_size=1, max_size=6),
       k=st.integers(1, 5))
def test_topk_mask_keeps_the_k_largest_and_breaks_ties_towards_low_indices(z2, k):
    z2 = np.array(z2, dtype=np.float64)                  # small integers: many ties
    mask = ms.topk_mask(z2, k)
    assert mask.dtype == bool and np.all(mask.sum(axis=1) == k)
    for row, chosen in zip(z2, mask):
        expected = sorted(range(5), key=lambda j: (-row[j], j))[:k]
        assert set(np.flatnonzero(chosen)) == set(expected)


def test_auxk_mask_uses_only_dead_latents():
    z2 = np.array([[5.0, 4.0, 3.0, 2.0, 1.0], [1.0, 2.0, 3.0, 4.0, 5.0]])
    dead = np.array([True, False, True, False, True])
    np.testing.assert_array_equal(ms.auxk_mask(z2, dead, 2),
                                  [[True, False, True, False, False],
                                   [False, False, True, False, True]])
    assert ms.auxk_mask(z2, dead, 5).sum() == 6                 # fewer dead than aux_k: all of them
    assert not ms.auxk_mask(z2, np.zeros(5, bool), 2).any()


def test_encoders_decoder_and_terms():
    params, X = make_net()
    z2 = (X - params["b2"]) @ params["W1"].T + params["b1"]
    z2_relu = X @ params["W1"].T + params["b1"]                # ReLU + L1: no pre-encoder bias
    np.testing.assert_allclose(ms.preactivations(params, X), z2)
    np.testing.assert_allclose(ms.relu_preactivations(params, X), z2_relu)
    np.testing.assert_allclose(ms.encode_relu(params, X), np.maximum(z2_relu, 0))
    a2 = ms.encode_topk(params, X, 2)
    assert np.all((a2 > 0).sum(axis=1) <= 2) and np.all(a2 >= 0)
    np.testing.assert_allclose(ms.decode_linear(params, a2), a2 @ params["W2"].T + params["b2"])

    terms = ms.relu_l1_cost_terms(params, X, l1=0.7, lam=0.1)
    assert set(terms) == {"reconstruction", "sparsity", "weight_decay", "cost"}
    assert terms["cost"] == pytest.approx(ms.relu_l1_cost_and_grad(params, X, l1=0.7, lam=0.1)[0])
    x_hat = ms.decode_linear(params, np.maximum(z2_relu, 0))
    assert terms["reconstruction"] == pytest.approx(np.sum((x_hat - X) ** 2) / (2 * len(X)))

    dead = np.array([False, True, False, True, True])
    settings = dict(k=2, aux_k=2, alpha=0.5, dead=dead, lam=0.1)
    terms = ms.topk_cost_terms(params, X, **settings)
    assert terms["sparsity"] == 0.0 and terms["auxk"] > 0
    assert terms["cost"] == pytest.approx(ms.topk_cost_and_grad(params, X, **settings)[0])
    no_dead = ms.topk_cost_and_grad(params, X, k=2, aux_k=2, dead=np.zeros(5, bool))
    assert_same(*no_dead, *ms.topk_cost_and_grad(params, X, k=2), rtol=0)


def test_float32_stays_float32():
    params, X = make_net(dtype=np.float32)
    for cost, grads in (ms.relu_l1_cost_and_grad(params, X, l1=0.5),
                        ms.topk_cost_and_grad(params, X, k=2, aux_k=2, dead=np.ones(5, bool))):
        assert isinstance(cost, float)
        assert all(grads[n].dtype == np.float32 for n in sae.PARAM_NAMES)
    assert ms.encode_topk(params, X, 2).dtype == np.float32


# ---------------------------------------------------------------------------
# Initialization
# ---------------------------------------------------------------------------


def check_tied(params, norm):
    assert sae.check_params(params) is params
    np.testing.assert_allclose(ms.column_norms(params["W2"]), norm)
    np.testing.assert_array_equal(params["W1"], params["W2"].T)
    assert not np.shares_memory(params["W1"], params["W2"])
    assert not params["b1"].any()


def test_init_relu_l1_is_anthropics():
    params = ms.init_relu_l1(6, 4, rng=0)
    check_tied(params, ms.RELU_L1_INIT_NORM)
    assert not params["b2"].any()                               # both biases 0
    assert ms.init_relu_l1(6, 4, rng=0, dtype=np.float32)["W2"].dtype == np.float32
    np.testing.assert_array_equal(ms.init_relu_l1(6, 4, rng=1)["W2"], ms.init_relu_l1(6, 4, rng=1)["W2"])


def test_init_topk_puts_b2_at_the_geometric_median():
    X = np.random.default_rng(0).random((20, 6)) ** 3
    params = ms.init_topk(6, 4, rng=0, X=X)
    check_tied(params, 1.0)
    np.testing.assert_allclose(params["b2"], ms.geometric_median(X))
    assert not np.allclose(params["b2"], X.mean(axis=0), atol=1e-3)   # not the mean
    assert not ms.init_topk(6, 4, rng=0)["b2"].any()
    assert ms.init_topk(6, 4, rng=0, dtype=np.float32, X=X)["b2"].dtype == np.float32


# ---------------------------------------------------------------------------
# The geometric median (Weiszfeld)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("X, median", [
    ([[0.0], [1.0], [10.0]], [1.0]),                                     # 1-D: the ordinary median
    ([[0.0], [1.0], [2.0], [50.0], [-7.0]], [1.0]),
    ([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]], [0.0, 0.0]),  # symmetric: the centre
    ([[0.0, 0.0], [1.0, 0.0], [0.5, np.sqrt(3) / 2]], [0.5, np.sqrt(3) / 6]),   # equilateral: centroid
    ([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], [(3 - np.sqrt(3)) / 6] * 2),  # Fermat point: 120 degrees
    ([[0.0, 0.0], [10.0, 0.0], [5.0, 0.5]], [5.0, 0.5]),                 # an angle over 120: the vertex
    ([[2.0, 3.0, 4.0]] * 3, [2.0, 3.0, 4.0]),                            # all rows the same
])
def test_geometric_median_of_known_cases(X, median):
    np.testing.assert_allclose(ms.geometric_median(np.array(X)), median, atol=1e-7)


@settings(max_examples=30, deadline=None)
@given(m=st.integers(1, 12), n=st.integers(1, 4), seed=st.integers(0, 2**32 - 1))
def test_geometric_median_minimizes_the_sum_of_distances(m, n, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n)) * rng.uniform(0.1, 10)
    y = ms.geometric_median(X)
    total = lambda point: np.sum(np.sqrt(np.sum((X - point) ** 2, axis=1)))   # noqa: E731
    scale = np.sqrt(np.mean(np.sum((X - X.mean(axis=0)) ** 2, axis=1))) + 1e-300
    assert total(y) <= total(X.mean(axis=0)) * (1 + 1e-12)
    for direction in rng.standard_normal((10, n)):
        step = 1e-3 * scale * direction / np.linalg.norm(direction)
        assert total(y) <= total(y + step) * (1 + 1e-8)


def test_geometric_median_is_robust_and_refuses_bad_input():
    X = np.vstack([np.zeros((9, 2)), [[1000.0, 1000.0]]])       # one far-away row
    np.testing.assert_allclose(ms.geometric_median(X), [0.0, 0.0], atol=1e-6)
    assert ms.geometric_median(X)[0] < X.mean(axis=0)[0] / 100  # the mean is pulled to 100
    with pytest.raises(ValueError, match="^X:"):
        ms.geometric_median(np.array([1.0, np.nan]).reshape(1, 2))
    with pytest.raises(ValueError, match="^X:"):
        ms.geometric_median(np.zeros(3))


# ---------------------------------------------------------------------------
# AuxK's weight: alpha relative to the data's variance
# ---------------------------------------------------------------------------


def test_auxk_weight_is_alpha_times_the_mean_predictions_reconstruction_term():
    params, X = make_net(seed=2)
    dead = np.array([False, True, False, True, True])
    c = ms.mean_prediction_scale(X)
    assert c == pytest.approx(np.sum((X - X.mean(axis=0)) ** 2) / (2 * len(X)))
    assert_same(*ms.topk_cost_and_grad(params, X, k=2, aux_k=2, alpha=0.5, dead=dead),
                *ms.topk_cost_and_grad(params, X, k=2, aux_k=2, alpha=0.5, dead=dead, aux_scale=c),
                rtol=1e-14)
    one = ms.topk_cost_terms(params, X, k=2, aux_k=2, alpha=0.5, dead=dead, aux_scale=1.0)["auxk"]
    relative = ms.topk_cost_terms(params, X, k=2, aux_k=2, alpha=0.5, dead=dead)["auxk"]
    assert relative == pytest.approx(c * one)
    # OpenAI's loss, reconstruction / c + alpha L_aux, times the constant c: J.
    plain = ms.topk_cost_terms(params, X, k=2)["reconstruction"]
    openai_loss = plain / c + one                         # one = alpha L_aux (aux_scale 1)
    assert ms.topk_cost_terms(params, X, k=2, aux_k=2, alpha=0.5, dead=dead)["cost"] == \
        pytest.approx(c * openai_loss)


# ---------------------------------------------------------------------------
# Validation: every bad argument is named
# ---------------------------------------------------------------------------

P, XX = make_net()
DEAD = np.array([False, True, False, True, True])
BAD_CALLS = [
    (ms.relu_l1_cost_and_grad, dict(l1=-1.0), "l1"),
    (ms.relu_l1_cost_and_grad, dict(l1=float("nan")), "l1"),
    (ms.relu_l1_cost_and_grad, dict(lam=-0.1), "lam"),
    (ms.topk_cost_and_grad, dict(k=0), "k"),
    (ms.topk_cost_and_grad, dict(k=6), "k"),
    (ms.topk_cost_and_grad, dict(k=2.0), "k"),
    (ms.topk_cost_and_grad, dict(k=2, aux_k=9, dead=DEAD), "aux_k"),
    (ms.topk_cost_and_grad, dict(k=2, alpha=-1.0), "alpha"),
    (ms.topk_cost_and_grad, dict(k=2, aux_scale=-1.0), "aux_scale"),
    (ms.topk_cost_and_grad, dict(k=2, aux_scale=float("inf")), "aux_scale"),
    (ms.topk_cost_and_grad, dict(k=2, aux_k=2, dead=DEAD[:3]), "dead"),
    (ms.topk_cost_and_grad, dict(k=2, aux_k=2, dead=DEAD.astype(int)), "dead"),
    (ms.topk_cost_and_grad, dict(k=2, mask=np.ones((7, 5), bool)), "mask"),
    (ms.topk_cost_and_grad, dict(k=2, mask=np.ones((3, 5), bool)), "mask"),
    (ms.topk_cost_and_grad, dict(k=2, aux_k=2, dead=DEAD, aux_mask=np.ones((7, 5), bool)),
     "aux_mask"),
    (ms.topk_cost_and_grad, dict(k=2, aux_target=np.zeros((6, 6))), "aux_target"),
    (ms.topk_cost_terms, dict(k=9), "k"),
    (ms.relu_l1_cost_terms, dict(l1="big"), "l1"),
]


@pytest.mark.parametrize("fn, kwargs, name", BAD_CALLS)
def test_bad_arguments_are_named(fn, kwargs, name):
    with pytest.raises((ValueError, TypeError), match=f"^{name}:"):
        fn(P, XX, **kwargs)


def test_bad_data_and_params_are_named():
    with pytest.raises(ValueError, match=r"^X:"):
        ms.relu_l1_cost_and_grad(P, XX[:, :3])
    with pytest.raises(ValueError, match=r"^params\['b2'\]"):
        ms.topk_cost_and_grad(dict(P, b2=P["b2"][:2]), XX, k=2)
    with pytest.raises(ValueError, match="^aux_k:.*m >= 2"):
        ms.topk_cost_and_grad(P, XX[:1], k=2, aux_k=2, dead=DEAD)
    with pytest.raises(ValueError, match="^aux_k:.*the same"):
        ms.topk_cost_and_grad(P, np.tile(XX[:1], (3, 1)), k=2, aux_k=2, dead=DEAD)
    with pytest.raises(ValueError, match="^k:"):
        ms.topk_mask(np.zeros((2, 3)), 4)
    with pytest.raises(ValueError, match="^z2:"):
        ms.topk_mask(np.zeros(3), 1)


# Issue 20: the pieces called directly refuse bad input by name; tiny decoder columns.
@pytest.mark.parametrize("call, match", [
    (lambda: ms.topk_mask(np.zeros((3, 0)), 1), "z2: expected .* n_hidden >= 1"),
    (lambda: ms.auxk_mask(np.zeros((3, 4)), np.array([True, False]), 1), r"dead: expected shape \(4,\)"),
    (lambda: ms.auxk_mask(np.zeros((3, 4)), np.ones(6, dtype=bool), 1), r"dead: expected shape \(4,\)"),
    (lambda: ms.auxk_mask(np.zeros((3, 4)), np.ones(4, dtype=bool), 0), "aux_k: expected a positive"),
])
def test_mask_functions_refuse_misshapen_input_by_name(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_the_dead_latent_tracker_refuses_a_wrong_width():
    from saelab.training.modern import DeadLatentTracker

    tracker = DeadLatentTracker(4, window=10)
    with pytest.raises(ValueError, match=r"a2: expected .* \(b, 4\)"):
        tracker.update(np.zeros((3, 6)))
    with pytest.raises(ValueError, match=r"fired: expected a bool array \(4,\)"):
        tracker.update_fired(np.zeros(3, dtype=bool), 5)
    tracker.update(np.array([[1.0, 0, 0, 0]]))
    np.testing.assert_array_equal(tracker.since_fired, [0, 1, 1, 1])


@pytest.mark.parametrize("dtype, tiny", [(np.float64, 1e-200), (np.float32, 1e-30)])
def test_normalize_decoder_makes_a_tiny_column_unit_not_leaves_it(dtype, tiny):
    W2 = np.eye(3, dtype=dtype)
    W2[:, 1] *= dtype(tiny)                     # its squares underflow to 0
    unit = ms.normalize_decoder(W2)
    np.testing.assert_allclose(ms.column_norms(unit), 1, rtol=1e-6)
    assert ms.column_norms(W2)[1] == pytest.approx(tiny, rel=1e-6)
    assert ms.column_norms(np.zeros((3, 2), dtype=dtype)).tolist() == [0, 0]


@pytest.mark.parametrize("model", ["relu_l1", "topk"])
def test_input_too_large_for_the_dtype_names_X_not_b2(model):
    """Issue 20: the modern models blamed params['b2'] for an X too large; now X, as the notes'."""
    X = np.random.default_rng(0).standard_normal((5, 6)) * 1e300
    if model == "topk":
        call = lambda: ms.topk_cost_and_grad(ms.init_topk(6, 4, rng=0), X, k=2)  # noqa: E731
    else:
        call = lambda: ms.relu_l1_cost_and_grad(ms.init_relu_l1(6, 4, rng=0), X, l1=1.0)  # noqa: E731
    with pytest.raises(ValueError, match=r"^X: values up to .* too large.*standardize X"):
        call()
