"""saelab/training/modern.py: Adam for ReLU + L1 and TopK, the unit-norm decoder, dead latents, AuxK,
progress lines, the estimator and save/load with the right encoder."""

import io

import numpy as np
import pytest

import fast
import modern_sae
from saelab.training import autoencoder as train
from saelab.training import modern as train_modern
from saelab.files.model_file import save_model
from saelab.training.loading import load_autoencoder
from saelab.training.modern import DeadLatentTracker, ModernAutoencoder, adam_modern


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.random((120, 12)) ** 3                      # (m, n_visible), mostly small, as pixels


# --- dead latents -----------------------------------------------------------------


def test_dead_latent_tracker_counts_examples_since_each_latent_fired():
    tracker = DeadLatentTracker(3, window=5)
    tracker.update(np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]]))     # latent 0 fires
    assert tracker.since_fired.tolist() == [0, 2, 2] and not tracker.dead.any()
    tracker.update(np.array([[0.0, 0.0, 0.5]] * 3))                    # latent 2 fires
    assert tracker.since_fired.tolist() == [3, 5, 0]
    assert tracker.dead.tolist() == [False, True, False]               # 5 examples without firing
    assert tracker.dead_fraction == pytest.approx(1 / 3)
    tracker.update(np.array([[0.0, 2.0, -1.0]]))                       # negative is not firing
    assert tracker.since_fired.tolist() == [4, 0, 1] and not tracker.dead.any()
    tracker.update_fired(np.array([False, False, True]), 4)
    assert tracker.since_fired.tolist() == [8, 4, 0] and tracker.dead.tolist() == [True, False, False]
    with pytest.raises(ValueError, match="dead_window"):
        DeadLatentTracker(3, window=0)


# --- the optimizer ------------------------------------------------------------------


def test_first_topk_steps_normalize_project_then_step(data, monkeypatch):
    """OpenAI's order: the gradient at W2 as it is, then W2 normalized, the gradient projected
    against the normalized columns, the Adam step; the next forward pass sees the stepped W2."""
    params = modern_sae.init_topk(12, 8, rng=1, X=data)
    lr = 1e-2
    seen = []
    real = fast.topk_unchecked

    def spy(params_, X, *rest):
        seen.append({name: value.copy() for name, value in params_.items()})
        return real(params_, X, *rest)

    monkeypatch.setattr(fast, "topk_unchecked", spy)
    trained, _ = adam_modern(params, data, model="topk", k=3, lr=lr, batch_size=len(data),
                             epochs=1, rng=0, progress=False)
    _, grads = modern_sae.topk_cost_and_grad(params, data, k=3)
    unit = modern_sae.normalize_decoder(params["W2"])            # already unit at the start
    grads["W2"] = modern_sae.project_decoder_grad(unit, grads["W2"])
    for name in params:                                  # t = 1: the step is lr g / (|g| + eps)
        start = unit if name == "W2" else params[name]
        expected = start - lr * grads[name] / (np.abs(grads[name]) + 1e-8)
        np.testing.assert_allclose(trained[name], expected, rtol=1e-10, atol=1e-12)
    norms = np.linalg.norm(trained["W2"], axis=0)
    assert not np.allclose(norms, 1.0, rtol=1e-6) and np.allclose(norms, 1.0, rtol=0.05)

    seen.clear()
    two, _ = adam_modern(params, data, model="topk", k=3, lr=lr, batch_size=len(data), epochs=2,
                         rng=0, progress=False)
    np.testing.assert_array_equal(seen[1]["W2"], trained["W2"])   # step 2's forward: not renormalized
    assert not np.allclose(np.linalg.norm(two["W2"], axis=0), 1.0, rtol=1e-6)


def test_first_relu_l1_step_is_plain_adam(data):
    params = modern_sae.init_relu_l1(12, 8, rng=2)
    lr = 1e-2
    trained, _ = adam_modern(params, data, model="relu_l1", l1=0.5, lr=lr, batch_size=len(data),
                             epochs=1, rng=0, progress=False)
    _, grads = modern_sae.relu_l1_cost_and_grad(params, data, l1=0.5)
    for name in params:
        expected = params[name] - lr * grads[name] / (np.abs(grads[name]) + 1e-8)
        np.testing.assert_allclose(trained[name], expected, rtol=1e-10, atol=1e-12)


def test_schedules_warm_up_l1_and_decay_the_rate():
    factors = [train_modern.schedule(t, 20, 0.1, 0.25) for t in range(1, 21)]   # W = 2, D = 5
    assert [f[0] for f in factors[:4]] == [0.0, 0.5, 1.0, 1.0]
    assert [f[1] for f in factors[14:]] == [1.0, 1.0, 0.8, 0.6, 0.4, 0.2]
    assert train_modern.schedule(1, 20, 0.0, 0.0) == (1.0, 1.0)


def test_the_relu_l1_recipe_warms_up_clips_and_decays(data, monkeypatch):
    params = modern_sae.init_relu_l1(12, 8, rng=2)
    l1_seen = []
    real = fast.relu_l1_unchecked

    def spy(params_, X, l1, lam):
        l1_seen.append(l1)
        return real(params_, X, l1, lam)

    monkeypatch.setattr(fast, "relu_l1_unchecked", spy)
    lr = 1e-2
    trained, history = adam_modern(params, data, model="relu_l1", l1=0.5, lr=lr, batch_size=12,
                                   epochs=2, rng=0, progress=False,
                                   l1_warmup=0.25, lr_decay=0.2, clip_grad_norm=0.5)
    assert l1_seen[:6] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5] and l1_seen[-1] == 0.5   # W = 5 of 20
    assert 0 < history["clipped_steps"] <= 20                   # steps whose gradient was above 0.5
    _, grads = modern_sae.relu_l1_cost_and_grad(params, data[np.random.default_rng(0).permutation(120)[:12]],
                                                l1=0.0)
    clipped, norm = train_modern.clip_gradient(grads, 0.5)
    assert norm > 0.5
    total = np.sqrt(sum(np.sum(g ** 2) for g in clipped.values()))
    assert total == pytest.approx(0.5)
    for name in grads:                                  # the direction is kept
        np.testing.assert_allclose(clipped[name], grads[name] * 0.5 / norm)
    assert train_modern.clip_gradient(grads, None)[0] is grads


def test_input_scaling_and_folding(data):
    s = train_modern.input_scale(data)
    assert np.mean(np.sum((s * data) ** 2, axis=1)) == pytest.approx(data.shape[1])
    model = ModernAutoencoder(10, model="relu_l1", l1=0.05, epochs=2, batch_size=32, lr=1e-2,
                              seed=1).fit(data, progress=False)
    assert model.input_scaling and model.history_["input_scale"] == pytest.approx(s)
    trained = train_modern.fold_input_scale(model.params_, 1 / s)      # the params as trained, on s X
    np.testing.assert_allclose(model.encode(data), modern_sae.encode_relu(trained, s * data),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(model.reconstruct(data),
                               modern_sae.decode_linear(trained, modern_sae.encode_relu(trained, s * data)) / s,
                               rtol=1e-10, atol=1e-12)
    terms = model.cost_terms(data)
    assert terms["cost"] == pytest.approx(modern_sae.relu_l1_cost_terms(trained, s * data, l1=0.05)["cost"])
    back = train_modern.fold_input_scale(trained, s)
    for name in back:
        np.testing.assert_allclose(back[name], model.params_[name], rtol=1e-14)
    with pytest.raises(ValueError, match="^X:"):
        train_modern.input_scale(np.zeros((3, 4)))


def test_auxk_weight_defaults_to_the_datas_variance(data):
    params = modern_sae.init_topk(12, 10, rng=5, X=data)
    _, history = adam_modern(params, data, model="topk", k=2, aux_k=4, batch_size=40, epochs=1,
                             rng=0, progress=False)
    assert history["aux_scale"] == pytest.approx(modern_sae.mean_prediction_scale(data))
    _, history = adam_modern(params, data, model="topk", k=2, aux_k=4, aux_scale=1.0, batch_size=40,
                             epochs=1, rng=0, progress=False)
    assert history["aux_scale"] == 1.0


@pytest.mark.parametrize("model, settings", [("relu_l1", {"l1": 0.05}), ("topk", {"k": 3})])
def test_training_lowers_the_cost_and_is_reproducible(data, model, settings):
    def init(*args, **kwargs):
        if model == "topk":
            return modern_sae.init_topk(*args, **kwargs)
        return modern_sae.init_relu_l1(*args, **{k: v for k, v in kwargs.items() if k != "X"})

    params = init(12, 10, rng=3, X=data)
    a, history = adam_modern(params, data, model=model, lr=1e-2, batch_size=16, epochs=6, rng=4,
                             progress=False, **settings)
    b, _ = adam_modern(params, data, model=model, lr=1e-2, batch_size=16, epochs=6, rng=4,
                       progress=False, **settings)
    assert all(np.array_equal(a[name], b[name]) for name in a)
    assert history["cost"][-1] < 0.8 * history["cost"][0]
    assert len(history["step_cost"]) == 6 * 8 and history["epoch"] == list(range(7))
    assert len(history["dead_fraction"]) == 7 and history["model"] == model
    assert all(np.array_equal(params[name], init(12, 10, rng=3, X=data)[name]) for name in params)


def test_auxk_gets_the_dead_mask_and_revives_latents(data, monkeypatch):
    params = modern_sae.init_topk(12, 10, rng=5, X=data)
    params["b1"][:4] = -50.0                       # latents 0-3 never fire: dead after the window
    seen = []
    real = fast.topk_unchecked

    def spy(params_, X, k, aux_k, alpha, dead, lam, *rest):
        seen.append(None if dead is None else dead.copy())
        return real(params_, X, k, aux_k, alpha, dead, lam, *rest)

    monkeypatch.setattr(fast, "topk_unchecked", spy)
    _, history = adam_modern(params, data, model="topk", k=2, aux_k=4, lr=1e-2, batch_size=30,
                             epochs=2, dead_window=60, rng=0, progress=False)
    assert seen[0] is not None and not seen[0].any()          # nothing dead before 60 examples
    assert seen[2][:4].all()                                  # after two batches of 30: 0-3 dead
    assert history["dead_fraction"][1] >= 0.4 - 1e-12 or history["dead_fraction"][2] < 0.4
    seen.clear()
    adam_modern(params, data, model="topk", k=2, lr=1e-2, batch_size=30, epochs=1, rng=0,
                progress=False)
    assert all(d is None for d in seen)                        # no aux_k: no dead mask passed


def test_progress_lines_show_l0_normalized_mse_and_dead_fraction(data):
    stream = io.StringIO()
    params = modern_sae.init_topk(12, 10, rng=6, X=data)
    adam_modern(params, data, model="topk", k=3, lr=1e-2, batch_size=40, epochs=2, rng=0,
                progress=stream, progress_every=0)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("step 0/6  J ") and "(all examples)" in lines[0]
    assert lines[-1].startswith("step 6/6  J ") and "(epoch 2, mini-batch)" in lines[-1]
    for line in lines:
        assert "= recon " in line and ", L0 " in line and ", nMSE " in line and ", dead 0.0%" in line


def test_nonfinite_stops_with_the_last_finite_params(data, monkeypatch):
    params = modern_sae.init_relu_l1(12, 10, rng=7)
    real = fast.relu_l1_unchecked
    seen = []

    def failing(params_, X, l1, lam):
        seen.append({name: value.copy() for name, value in params_.items()})
        terms, grads, fired = real(params_, X, l1, lam)
        return ({**terms, "cost": float("nan")} if len(seen) == 3 else terms), grads, fired

    monkeypatch.setattr(fast, "relu_l1_unchecked", failing)
    trained, history = adam_modern(params, data, model="relu_l1", l1=0.1, lr=1e-2, batch_size=40,
                                   epochs=3, rng=0, progress=False)
    assert history["status"] == "nonfinite" and "step 3" in history["message"]
    assert len(history["step_cost"]) == 2
    for name in trained:                               # the params of the last finite step
        np.testing.assert_array_equal(trained[name], seen[1][name])


def test_callback_stops_cleanly(data):
    params = modern_sae.init_topk(12, 10, rng=8, X=data)
    steps = []

    def callback(step):
        steps.append(step.iteration)
        return step.iteration == 2

    _, history = adam_modern(params, data, model="topk", k=3, batch_size=10, epochs=3, rng=0,
                             callback=callback, progress=False)
    assert steps == [1, 2] and history["status"] == "stopped"


@pytest.mark.parametrize("kwargs, match", [
    ({"model": "sigmoid"}, "model"), ({"model": "topk"}, "k"), ({"model": "topk", "k": 11}, "k"),
    ({"model": "relu_l1", "l1": -1.0}, "l1"), ({"model": "topk", "k": 2, "aux_k": 0}, "aux_k"),
    ({"model": "topk", "k": 2, "lr": 0.0}, "lr"), ({"model": "topk", "k": 2, "dead_window": 0},
                                                   "dead_window"),
    ({"model": "relu_l1", "l1_warmup": 1.0}, "l1_warmup"), ({"model": "relu_l1", "lr_decay": -0.1},
                                                             "lr_decay"),
    ({"model": "relu_l1", "clip_grad_norm": 0.0}, "clip_grad_norm"),
    ({"model": "topk", "k": 2, "aux_k": 2, "aux_scale": -1.0}, "aux_scale"),
])
def test_bad_arguments_are_refused_by_name(data, kwargs, match):
    params = modern_sae.init_topk(12, 10, rng=0)
    with pytest.raises((TypeError, ValueError), match=match):
        adam_modern(params, data, progress=False, **kwargs)


# --- the estimator and the model file -----------------------------------------------


@pytest.mark.parametrize("model, settings", [("relu_l1", {"l1": 0.05}),
                                             ("topk", {"k": 3, "aux_k": 4})])
def test_saved_model_loads_and_encodes_with_its_own_encoder(tmp_path, data, model, settings):
    estimator = ModernAutoencoder(10, model=model, epochs=2, batch_size=32, lr=1e-2, seed=1,
                                  **settings).fit(data, progress=False)
    path = estimator.save(tmp_path / "model.npz", info={"data": "test"})
    with pytest.raises(ValueError, match=f"{model!r} model.*load_autoencoder"):
        train.SparseAutoencoder.load(path)          # each estimator loads its own model
    for loaded in (load_autoencoder(path), ModernAutoencoder.load(path)):
        assert type(loaded) is ModernAutoencoder
        assert loaded.hyperparameters() == estimator.hyperparameters()
        assert loaded.info_ == {"data": "test"}
        np.testing.assert_array_equal(loaded.encode(data), estimator.encode(data))
        np.testing.assert_array_equal(loaded.reconstruct(data), estimator.reconstruct(data))
    A2 = loaded.encode(data)
    if model == "topk":
        assert (np.count_nonzero(A2, axis=1) <= 3).all()
        np.testing.assert_array_equal(A2, modern_sae.encode_topk(estimator.params_, data, 3))
    else:
        np.testing.assert_array_equal(A2, modern_sae.encode_relu(estimator.params_, data))
    metrics = loaded.metrics(data)
    assert metrics["l0"] == pytest.approx(np.count_nonzero(A2) / len(data))
    assert metrics["l0_label"] == "L0" and 0 < metrics["normalized_mse"] < 1
    density = loaded.feature_density(data)                  # the estimator's feature density
    assert density["dead"] == metrics["dead_latents"]
    assert density["counts"].sum() == 10 - metrics["dead_latents"]
    np.testing.assert_allclose(10 ** density["log10_density"],
                               metrics["firing_fractions"][metrics["firing_fractions"] > 0])
    from saelab.figures.density import save_density_histogram
    figure = save_density_histogram(metrics["firing_fractions"], tmp_path / "density.png")
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="^fractions:"):
        save_density_histogram(np.zeros((2, 2)), tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_notes_model_still_loads_as_itself(tmp_path, data):
    estimator = train.SparseAutoencoder(5, max_iter=3).fit(data, progress=False)
    path = estimator.save(tmp_path / "notes.npz")
    loaded = load_autoencoder(path)
    assert type(loaded) is train.SparseAutoencoder
    np.testing.assert_array_equal(loaded.encode(data), estimator.encode(data))
    with pytest.raises(ValueError, match="'sigmoid' model.*load_autoencoder"):
        ModernAutoencoder.load(path)


def test_unknown_model_name_is_refused(tmp_path):
    params = modern_sae.init_topk(4, 3, rng=0)
    path = save_model(tmp_path / "odd.npz", params, {"model": "gated"})
    with pytest.raises(ValueError, match="gated"):
        load_autoencoder(path)
    for load in (train.SparseAutoencoder.load, ModernAutoencoder.load):
        with pytest.raises(ValueError, match="gated"):
            load(path)


def test_old_relu_l1_files_are_refused(tmp_path):
    params = modern_sae.init_relu_l1(4, 3, rng=0)
    path = save_model(tmp_path / "old.npz", params, {"model": "relu_l1", "l1": 1.0})
    with pytest.raises(ValueError, match="before the April 2024 recipe"):
        load_autoencoder(path)


def test_estimator_recipes_and_refusals(data):
    relu = ModernAutoencoder(10, model="relu_l1")
    assert (relu.input_scaling, relu.l1_warmup, relu.lr_decay, relu.clip_grad_norm) == (True, 0.05, 0.2, 0.5)
    topk = ModernAutoencoder(10, model="topk", k=2)
    assert (topk.input_scaling, topk.l1_warmup, topk.lr_decay, topk.clip_grad_norm) == (False, 0.0, 0.0, None)
    with pytest.raises(TypeError, match="^input_scaling:"):
        ModernAutoencoder(10, model="relu_l1", input_scaling=1)
    with pytest.raises(ValueError, match="^lr_decay:"):
        ModernAutoencoder(10, model="relu_l1", lr_decay=1.5)


def test_estimator_refuses_bad_settings_and_unfitted_use(data):
    with pytest.raises(ValueError, match="k"):
        ModernAutoencoder(10, model="topk")
    with pytest.raises(RuntimeError, match="not fitted"):
        ModernAutoencoder(10, model="topk", k=2).encode(data)
    assert train_modern.DEFAULT_DEAD_WINDOW == 10_000


# Issue 20: AuxK training survives a last mini-batch of one row, and refuses batch_size 1.
def test_batch_bounds_join_a_short_last_batch():
    from saelab.training.modern import batch_bounds

    assert batch_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert batch_bounds(9, 4) == [(0, 4), (4, 8), (8, 9)]
    assert batch_bounds(9, 4, min_rows=2) == [(0, 4), (4, 9)]
    assert batch_bounds(1, 4, min_rows=2) == [(0, 1)]
    assert batch_bounds(8, 4, min_rows=2) == [(0, 4), (4, 8)]


def test_auxk_with_a_one_row_last_batch_trains_to_the_end(data):
    m = 2 * 16 + 1                                       # m % batch_size == 1
    X = data[:m]
    params = modern_sae.init_topk(12, 60, rng=3, X=X)     # 60 latents, 1 kept: many never fire
    trained, history = adam_modern(params, X, model="topk", k=1, aux_k=4, batch_size=16, epochs=3,
                                   dead_window=16, rng=0, progress=False, lr=1e-2)
    assert history["status"] == "done", history["message"]
    assert history["steps_per_epoch"] == 2 and len(history["step_cost"]) == 6
    assert max(history["dead_fraction"]) > 0               # AuxK had dead latents to work on
    with pytest.raises(ValueError, match="batch_size: AuxK .* at least 2 rows, got 1"):
        adam_modern(params, X, model="topk", k=2, aux_k=4, batch_size=1, progress=False)
    with pytest.raises(ValueError, match="X: AuxK .* at least 2 examples, got 1"):
        adam_modern(params, X[:1], model="topk", k=2, aux_k=4, progress=False)
    with pytest.raises(ValueError, match="batch_size: AuxK"):
        ModernAutoencoder(10, model="topk", k=2, aux_k=4, batch_size=1)
