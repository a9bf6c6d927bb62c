"""Optimizers, progress, the estimator and model files, on tiny problems."""

import io

import numpy as np
import pytest

import fast
import sparse_autoencoder as sae
from saelab.training import common
from saelab.files import model_file
from saelab.training import autoencoder as train
from saelab.files.atomic import atomic_write

COST = dict(penalty="kl", rho=0.1, beta=3.0, lam=1e-3, decoder="sigmoid")


@pytest.fixture
def tiny():
    rng = np.random.default_rng(0)
    X = rng.random((60, 9))                                  # (m, n_visible) in [0, 1]
    params = sae.init_params(9, 4, rng=rng)
    return X, params


def snapshot(params):
    return {k: v.copy() for k, v in params.items()}


# --- optimizers lower the cost -----------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lbfgs_lowers_the_cost(tiny, dtype):
    X, params = tiny
    params = {k: v.astype(dtype) for k, v in params.items()}
    before = snapshot(params)
    trained, history = train.lbfgs(params, X, max_iter=40, progress=False, **COST)
    initial = sae.cost_terms(params, X, **COST)["cost"]
    final = sae.cost_terms(trained, X, **COST)["cost"]
    assert final < 0.5 * initial
    assert history["cost"][0] == pytest.approx(initial, rel=1e-6)
    assert history["cost"][-1] == pytest.approx(final, rel=1e-5)
    assert len(history["cost"]) == len(history["iteration"]) == len(history["elapsed"])
    assert 1 <= history["iteration"][-1] <= 40
    assert history["status"] == "done"
    assert all(v.dtype == dtype for v in trained.values())
    for k in before:                                          # the input is left alone
        np.testing.assert_array_equal(params[k], before[k])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("penalty", ["kl", "l1"])
def test_adam_lowers_the_cost(tiny, dtype, penalty):
    X, params = tiny
    params = {k: v.astype(dtype) for k, v in params.items()}
    cost = {**COST, "penalty": penalty, "beta": 0.1 if penalty == "l1" else 3.0}
    trained, history = train.adam(params, X, lr=1e-2, batch_size=16, epochs=15, rng=1,
                                  progress=False, **cost)
    assert history["cost"][-1] < 0.8 * history["cost"][0]
    assert history["epoch"] == list(range(16))
    assert len(history["step_cost"]) == 15 * 4                # ceil(60 / 16) = 4 steps per epoch
    assert history["cost"][-1] == pytest.approx(sae.cost_terms(trained, X, **cost)["cost"], rel=1e-6)
    assert all(v.dtype == dtype for v in trained.values())


def test_adam_is_reproducible_with_its_seed(tiny):
    X, params = tiny
    a, _ = train.adam(params, X, lr=1e-2, batch_size=7, epochs=2, rng=5, progress=False, **COST)
    b, _ = train.adam(params, X, lr=1e-2, batch_size=7, epochs=2, rng=5, progress=False, **COST)
    c, _ = train.adam(params, X, lr=1e-2, batch_size=7, epochs=2, rng=6, progress=False, **COST)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["W1"], c["W1"])


def test_adam_first_step_matches_the_formula(tiny):
    X, params = tiny
    lr = 0.05
    trained, _ = train.adam(params, X, lr=lr, batch_size=60, epochs=1, rng=0, progress=False, **COST)
    _, grads = sae.cost_and_grad(params, X, **COST)          # one full batch: order is irrelevant
    for k in params:
        g = grads[k]
        # t = 1: mo / (1 - beta1) = g and sqrt(ve / (1 - beta2)) = |g|.
        expected = params[k] - lr * g / (np.abs(g) + 1e-8)
        np.testing.assert_allclose(trained[k], expected, rtol=1e-10, atol=1e-12)


# --- stopping between steps ------------------------------------------------------


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_callback_stops_cleanly_with_the_last_params(tiny, optimizer):
    X, params = tiny
    seen = []

    def callback(step):
        seen.append((step.iteration, snapshot(step.params), step.cost))
        return step.iteration == 3

    if optimizer == "lbfgs":
        trained, history = train.lbfgs(params, X, max_iter=50, callback=callback, progress=False, **COST)
        assert history["iteration"] == [0, 1, 2, 3]
    else:
        trained, history = train.adam(params, X, lr=1e-2, batch_size=10, epochs=5, callback=callback,
                                      progress=False, **COST)
        assert len(history["step_cost"]) == 3
    assert history["status"] == "stopped"
    assert [s[0] for s in seen] == [1, 2, 3]
    for k in trained:
        np.testing.assert_array_equal(trained[k], seen[-1][1][k])


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_nonfinite_cost_stops_with_the_last_finite_params(tiny, monkeypatch, optimizer):
    X, params = tiny
    # Both check X once and call the unchecked functions: L-BFGS _cost_terms_and_grad
    # (which returns the parts of J with the gradient), Adam cost_and_grad_unchecked.
    name = "cost_terms_and_grad_unchecked" if optimizer == "lbfgs" else "cost_and_grad_unchecked"
    real = getattr(fast, name)
    calls = []

    def failing(p, X_, **kw):
        calls.append(snapshot(p))
        cost, grads = real(p, X_, **kw)
        if len(calls) != 5:
            return cost, grads
        return ({**cost, "cost": float("nan")} if optimizer == "lbfgs" else float("nan")), grads

    monkeypatch.setattr(train.fast, name, failing)
    if optimizer == "lbfgs":
        trained, history = train.lbfgs(params, X, max_iter=50, progress=False, **COST)
        last_iterate = history["iteration"][-1]
        assert last_iterate < 5
    else:
        trained, history = train.adam(params, X, lr=1e-2, batch_size=10, epochs=5, progress=False, **COST)
        for k in trained:                                     # the params of step 4, whose cost was finite
            np.testing.assert_array_equal(trained[k], calls[3][k])
    assert history["status"] == "nonfinite"
    assert "nan" in history["message"]
    assert np.isfinite(history["cost"]).all()
    assert np.isfinite(sae.cost_terms(trained, X, **COST)["cost"])


# --- progress ---------------------------------------------------------------------


def test_progress_prints_first_and_last_lines_only_when_quick(tiny):
    X, params = tiny
    stream = io.StringIO()
    train.adam(params, X, lr=1e-2, batch_size=10, epochs=3, progress=stream,
               progress_every=1e9, **COST)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("step  0/18") and lines[1].startswith("step 18/18")
    for part in ("J ", "recon", "decay", "sparsity", "mean rho_hat", "elapsed", "left"):
        assert part in lines[1]


def test_lbfgs_progress_lines_cost_no_extra_forward_pass(tiny, monkeypatch):
    # Lines as often as the rate limit allows (progress_every=0), yet cost_terms
    # runs only once, for the initial line: the others reuse the latest
    # evaluation's parts.
    X, params = tiny
    calls = []
    real = fast.cost_terms
    monkeypatch.setattr(train.fast, "cost_terms", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    stream = io.StringIO()
    trained, history = train.lbfgs(params, X, max_iter=15, progress=stream, progress_every=0, **COST)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and len(calls) == 1
    for line in lines:
        iteration = int(line.split()[1].split("/")[0])
        assert f"J {history['cost'][iteration]:.5g} " in line
    assert real(trained, X, **COST)["cost"] == pytest.approx(history["cost"][-1], rel=1e-12)


def test_progress_rate_is_limited_by_the_clock():
    now = [0.0]
    progress = common.Progress(100, "iter", every=2.0, stream=io.StringIO(), clock=lambda: now[0])
    terms = {"cost": 1.0, "reconstruction": 0.5, "weight_decay": 0.25, "sparsity": 0.25, "mean_rho_hat": 0.1}
    printed = []
    for step in range(101):
        now[0] = step * 0.5                                   # 0.5 s per step
        if progress.due(step):
            progress.report(step, lambda: terms)
            printed.append(step)
    assert printed == list(range(0, 101, 4))                  # every 2 s, and the last step
    assert "~0s left" in progress.stream.getvalue().splitlines()[-1]


def test_slow_cost_parts_widen_the_gap():
    now = [0.0]

    def slow_terms():
        now[0] += 1.0                                         # the forward pass takes 1 s
        return {"cost": 1.0, "reconstruction": 1.0, "weight_decay": 0.0, "sparsity": 0.0, "mean_rho_hat": 0.1}

    progress = common.Progress(10_000, "iter", every=2.0, stream=io.StringIO(), clock=lambda: now[0])
    progress.report(0, slow_terms)
    assert progress.gap == 20.0
    now[0] += 10.0
    assert not progress.due(1)
    now[0] += 10.0
    assert progress.due(2)


def test_format_duration():
    assert [common.format_duration(s) for s in (0, 42.4, 185, 3720)] == ["0s", "42s", "3m05s", "1h02m"]


# --- validation ---------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, error, name", [
    ({"max_iter": 0}, ValueError, "max_iter"),
    ({"rho": 1.5}, ValueError, "rho"),
    ({"penalty": "l2"}, ValueError, "penalty"),
    ({"callback": 3}, TypeError, "callback"),
])
def test_lbfgs_bad_arguments(tiny, kwargs, error, name):
    X, params = tiny
    with pytest.raises(error, match=name):
        train.lbfgs(params, X, progress=False, **kwargs)


@pytest.mark.parametrize("kwargs, error, name", [
    ({"lr": 0.0}, ValueError, "lr"),
    ({"lr": float("nan")}, TypeError, "lr"),
    ({"batch_size": 0}, ValueError, "batch_size"),
    ({"epochs": 1.5}, TypeError, "epochs"),
    ({"beta1": 1.0}, ValueError, "beta1"),
])
def test_adam_bad_arguments(tiny, kwargs, error, name):
    X, params = tiny
    with pytest.raises(error, match=name):
        train.adam(params, X, progress=False, **kwargs)


def test_bad_X_is_caught_before_training(tiny):
    X, params = tiny
    X = X.copy()
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="X: expected finite"):
        train.lbfgs(params, X, progress=False)
    with pytest.raises(ValueError, match="sigmoid decoder needs values in"):
        train.adam(params, np.full_like(X, 2.0), progress=False)


# --- model files -----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_save_load_round_trip_is_exact(tmp_path, tiny, dtype):
    _, params = tiny
    params = {k: (v + np.pi / 7).astype(dtype) for k, v in params.items()}
    hyper = {"n_visible": 9, "n_hidden": 4, "rho": 0.1, "beta": 3.0, "lam": 1 / 3, "penalty": "kl",
             "seed": 0, "flag": True, "none": None, "info": {"tile_shape": [3, 3]}}
    history = {"optimizer": "lbfgs", "cost": [3.0, 2.0 / 3.0], "status": "done"}
    extra = {"zca": np.random.default_rng(0).standard_normal((9, 9)), "mean": np.arange(9.0)}
    path = model_file.save_model(tmp_path / "m.npz", params, hyper, history=history, extra=extra)
    loaded, hyper2, history2, extra2 = model_file.load_model(path)
    for k in params:
        assert loaded[k].dtype == params[k].dtype
        np.testing.assert_array_equal(loaded[k], params[k])
    assert hyper2 == hyper and history2 == history
    assert extra2.keys() == extra.keys()
    for k in extra:
        np.testing.assert_array_equal(extra2[k], extra[k])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]     # no temporary left


def read_npz(path):
    with np.load(path) as data:
        return dict(data)


def test_load_rejects_files_that_are_not_models(tmp_path, tiny):
    _, params = tiny
    good = model_file.save_model(tmp_path / "good.npz", params, {"n_visible": 9, "n_hidden": 4})
    data = good.read_bytes()

    cases = {
        "garbage.npz": (b"this is not a zip file", "not a readable .npz"),
        "truncated.npz": (data[: len(data) // 2], "not a readable .npz"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ValueError, match=message) as info:
            model_file.load_model(tmp_path / name)
        assert name in str(info.value)

    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="no format_version"):
        model_file.load_model(tmp_path / "other.npz")

    arrays = read_npz(good)
    arrays["format_version"] = np.array(99)
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(ValueError, match="format version 99"):
        model_file.load_model(tmp_path / "future.npz")

    arrays = read_npz(good)
    del arrays["W2"]
    np.savez(tmp_path / "missing.npz", **arrays)
    with pytest.raises(ValueError, match="missing W2"):
        model_file.load_model(tmp_path / "missing.npz")

    arrays = read_npz(good)
    arrays["b1"] = np.zeros(5)
    np.savez(tmp_path / "shapes.npz", **arrays)
    with pytest.raises(ValueError, match=r"params\['b1'\]: expected shape \(4,\)"):
        model_file.load_model(tmp_path / "shapes.npz")

    with pytest.raises(FileNotFoundError, match="nowhere.npz"):
        model_file.load_model(tmp_path / "nowhere.npz")


def test_interrupted_write_keeps_the_old_file(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"old contents")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path) as handle:
            handle.write(b"half of the new")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


def test_save_rejects_non_json_hyperparameters(tmp_path, tiny):
    _, params = tiny
    with pytest.raises(TypeError, match="hyperparameters"):
        model_file.save_model(tmp_path / "m.npz", params, {"rng": np.random.default_rng()})
    assert list(tmp_path.iterdir()) == []


# --- the estimator -----------------------------------------------------------------------


def test_estimator_fit_encode_reconstruct_save_load(tmp_path, tiny):
    X, _ = tiny
    model = train.SparseAutoencoder(4, rho=0.1, lam=1e-3, max_iter=15, seed=3)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.encode(X)
    assert model.fit(X, progress=False) is model
    assert model.encode(X).shape == (60, 4)
    assert model.reconstruct(X).shape == (60, 9)
    model.save(tmp_path / "model.npz", extra={"mean": X.mean(axis=0)}, info={"data": "tiny"})
    loaded = train.SparseAutoencoder.load(tmp_path / "model.npz")
    assert loaded.hyperparameters() == model.hyperparameters()
    np.testing.assert_array_equal(loaded.encode(X), model.encode(X))
    np.testing.assert_array_equal(loaded.extra_["mean"], X.mean(axis=0))
    assert loaded.info_ == {"data": "tiny"}
    assert loaded.history_["cost"] == model.history_["cost"]


def test_estimator_same_seed_same_params(tiny):
    X, _ = tiny
    a = train.SparseAutoencoder(4, optimizer="adam", epochs=2, lr=1e-2, seed=7, dtype="float32").fit(X, progress=False)
    b = train.SparseAutoencoder(4, optimizer="adam", epochs=2, lr=1e-2, seed=7, dtype="float32").fit(X, progress=False)
    assert a.params_["W1"].dtype == np.float32
    assert all(np.array_equal(a.params_[k], b.params_[k]) for k in sae.PARAM_NAMES)


@pytest.mark.parametrize("kwargs, error, name", [
    ({"n_hidden": 0}, ValueError, "n_hidden"),
    ({"optimizer": "sgd"}, ValueError, "optimizer"),
    ({"dtype": "float16"}, TypeError, "dtype"),
    ({"seed": -1}, ValueError, "seed"),
    ({"beta": -1.0}, ValueError, "beta"),
])
def test_estimator_bad_hyperparameters(kwargs, error, name):
    kwargs = {"n_hidden": 3, **kwargs}
    with pytest.raises(error, match=name):
        train.SparseAutoencoder(**kwargs)


def test_estimator_rejects_1d_X():
    with pytest.raises(ValueError, match=r"X: expected a 2-D array"):
        train.SparseAutoencoder(3).fit(np.zeros(5), progress=False)


def test_scipy_blas_runs_single_threaded_inside_lbfgs_and_is_restored():
    import scipy.optimize  # noqa: F401  (loads SciPy's OpenBLAS)

    lib = train._scipy_openblas()
    if lib is None:
        pytest.skip("SciPy's bundled OpenBLAS not found in /proc/self/maps (not Linux or not a wheel)")
    before = lib.scipy_openblas_get_num_threads()
    with train.single_threaded_scipy_blas():
        assert lib.scipy_openblas_get_num_threads() == 1
    assert lib.scipy_openblas_get_num_threads() == before
