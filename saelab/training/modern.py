"""Training today's sparse autoencoders (ReLU + L1, TopK): mini-batch Adam, dead latents, AuxK.

The models themselves (forward pass, cost, hand-derived gradient) are in
``modern_sae.py``; this module trains them, as ``autoencoder`` trains the
notes' model, and shares its Adam update, progress lines, callbacks and
model file (``common``, ``saelab.files.model_file``).

    adam_modern(params, X, model=..., ...)   mini-batch Adam for "relu_l1" or "topk"
    DeadLatentTracker(n_hidden, window)      which latents have not fired in the last N examples
    ModernAutoencoder                        the estimator: fit / encode / reconstruct /
                                             metrics / save / load

Training, step by step (one mini-batch of rows of X):

1. dead = the latents that have not fired (a2 > 0) on any of the last
   ``dead_window`` training examples seen (``DeadLatentTracker``).
2. The cost and gradient on the batch, by the tuned ``fast.relu_l1_unchecked`` /
   ``fast.topk_unchecked`` (the same numbers as ``modern_sae.relu_l1_cost_and_grad``
   / ``topk_cost_and_grad``, tests/test_fast_path.py), which also say which
   latents fired. TopK with ``aux_k``: the cost includes the AuxK loss on
   the dead latents (``dead=dead``).
3. TopK: the gradient of W2 is projected, each column's component along
   that (unit) column removed (``modern_sae.project_decoder_grad``).
4. The Adam update of ``autoencoder.adam`` (the same formula and defaults).
5. TopK: the decoder's columns are renormalized to unit length
   (``modern_sae.normalize_decoder``).
6. The tracker counts the batch: latents that fired on it are alive again.

Dead latents: a latent is dead when it has not fired on any of the last
``dead_window`` training examples (default ``DEFAULT_DEAD_WINDOW`` =
10,000, a sixth of MNIST's training set; Gao et al. use 10 million tokens
on language models). Until that many examples have been seen no latent is
dead. The count carries over epochs.

Progress lines show J and its parts on the current mini-batch, with the
papers' metrics on that batch (L0, normalized MSE) and the dead fraction
from the tracker. ``history["cost"]`` holds J on all of X at the start,
then for each epoch the mean J of its mini-batches (no extra pass over X:
for the frontier's many runs that pass would cost 40% of an epoch).
"""

from __future__ import annotations

import math
import numbers
import time

import numpy as np

from saelab import diagnostics
import fast
import modern_sae
import sparse_autoencoder as sae
from saelab.checks import validation
from saelab.files.model_file import load_model, model_name, save_model
from saelab.training.common import (QUIET, TrainingStep, adam_update, all_finite, as_2d,
                                    check_callable, check_positive_real, check_unit_interval,
                                    copy_params, estimator_from_file, finish_epoch, make_progress)

MODELS = modern_sae.MODELS                     # ("relu_l1", "topk")
DEFAULT_DEAD_WINDOW = 10_000


# ---------------------------------------------------------------------------
# Dead latents
# ---------------------------------------------------------------------------


class DeadLatentTracker:
    """Counts, for each latent, the training examples seen since it last fired.

        tracker = DeadLatentTracker(n_hidden, window=10_000)
        tracker.update(a2)          # a2 (b, n_hidden): the latents of one mini-batch
        tracker.dead                # (n_hidden,) bool: not fired in the last `window` examples

    A latent fires on an example when its activation is > 0. After
    ``update``, a latent that fired on any row of the batch has count 0;
    every other latent's count grows by the batch's number of rows.
    """

    def __init__(self, n_hidden, window=DEFAULT_DEAD_WINDOW):
        self.window = validation.check_count("dead_window", window)
        self.since_fired = np.zeros(validation.check_count("n_hidden", n_hidden), dtype=np.int64)

    def update(self, a2):
        self.update_fired(np.any(a2 > 0, axis=0), a2.shape[0])

    def update_fired(self, fired, rows):
        """The same from ``fired`` (n_hidden,) bool, the latents that fired on ``rows`` examples."""
        self.since_fired += rows
        self.since_fired[fired] = 0

    @property
    def dead(self):
        return self.since_fired >= self.window           # (n_hidden,) bool

    @property
    def dead_fraction(self):
        return float(np.count_nonzero(self.dead) / self.since_fired.size)


# ---------------------------------------------------------------------------
# The two models' functions, by name
# ---------------------------------------------------------------------------


def _model_functions(model, *, l1, k, aux_k, alpha, lam):
    """(step(params, x, dead), cost_terms(params, x, dead, checked), encode(params, x, checked)).

    step returns (cost, grads, fired): the tuned, unchecked ``fast.relu_l1_unchecked`` /
    ``fast.topk_unchecked`` (X and the settings are checked once by ``adam_modern``).
    cost_terms and encode: with checked=True the public functions, which
    refuse values too large to compute with naming the culprit
    (``validation.check_modern_magnitudes``; at the start), with
    checked=False their unchecked bodies (progress lines during training: a
    run whose parameters grow too large is reported, then stops as "nonfinite").
    """
    validation.check_choice("model", model, MODELS)
    if model == "relu_l1":
        def cost_and_grad(params, x, dead):
            terms, grads, fired = fast.relu_l1_unchecked(params, x, l1, lam)
            return terms["cost"], grads, fired

        def cost_terms(params, x, dead, checked):
            if checked:
                return modern_sae.relu_l1_cost_terms(params, x, l1=l1, lam=lam)
            return modern_sae.relu_l1_cost_terms_unchecked(params, x, l1, lam)

        def encode(params, x, checked):
            return (modern_sae.encode_relu if checked else modern_sae.encode_relu_unchecked)(params, x)

        return cost_and_grad, cost_terms, encode

    def cost_and_grad(params, x, dead):
        terms, grads, fired = fast.topk_unchecked(params, x, k, aux_k, alpha, dead, lam)
        return terms["cost"], grads, fired

    def cost_terms(params, x, dead, checked):
        if checked:
            return modern_sae.topk_cost_terms(params, x, k=k, aux_k=aux_k, alpha=alpha,
                                              dead=dead, lam=lam)
        return modern_sae.topk_cost_terms_unchecked(params, x, k, aux_k, alpha, dead, lam)

    def encode(params, x, checked):
        return (modern_sae.encode_topk if checked else modern_sae.encode_topk_unchecked)(params, x, k)

    return cost_and_grad, cost_terms, encode


def format_modern_terms(terms):
    """'J 12.3 = recon 10.1 + sparsity 2.2, L0 16.2, nMSE 0.123, dead 3.1%' (one mini-batch)."""
    parts = " + ".join(f"{name.replace('reconstruction', 'recon').replace('weight_decay', 'decay')}"
                       f" {value:.4g}" for name, value in terms["parts"].items())
    return (f"J {terms['cost']:.5g} = {parts}, L0 {terms['l0']:.4g}, "
            f"nMSE {terms['normalized_mse']:.4g}, dead {100 * terms['dead_fraction']:.1f}%")


def _check_nonnegative(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name}: expected a finite real number >= 0, got {value!r}")
    if value < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
    return float(value)


def _check_model_settings(model, n_hidden, l1, k, aux_k, alpha, lam):
    """The models' hyperparameters, checked; returns them as (l1, k, aux_k, alpha, lam)."""
    validation.check_choice("model", model, MODELS)
    l1, alpha, lam = (_check_nonnegative(name, value) for name, value in
                      (("l1", l1), ("alpha", alpha), ("lam", lam)))
    if model == "topk":
        if k is None:
            raise ValueError("k: the TopK model needs k, the number of latents kept per example")
        k = validation.check_count("k", k)
        if k > n_hidden:
            raise ValueError(f"k: expected at most n_hidden = {n_hidden} latents, got {k}")
        if aux_k is not None:
            aux_k = validation.check_count("aux_k", aux_k)
    else:
        k = None if k is None else validation.check_count("k", k)
        aux_k = None if aux_k is None else validation.check_count("aux_k", aux_k)
    return l1, k, aux_k, alpha, lam


# ---------------------------------------------------------------------------
# Adam
# ---------------------------------------------------------------------------


def adam_modern(params, X, *, model, l1=1.0, k=None, aux_k=None, alpha=1 / 32, lam=0.0,
                lr=1e-3, batch_size=128, epochs=10, beta1=0.9, beta2=0.999, eps=1e-8,
                dead_window=DEFAULT_DEAD_WINDOW, rng=None, callback=None, progress=True,
                progress_every=2.0):
    """Mini-batch Adam for the ReLU + L1 or the TopK model (steps in the module docstring).

    params: initial params (``modern_sae.init_relu_l1`` / ``init_topk``), not
        modified; their dtype is the computation's.
    X: (m, n_visible) training data, any finite values (checked once).
    model: "relu_l1" (uses l1) or "topk" (uses k, and aux_k, alpha for AuxK:
        aux_k None = no AuxK). lam: weight decay (0 in the papers).
    lr, batch_size, epochs, beta1, beta2, eps, rng, callback, progress,
        progress_every: as ``autoencoder.adam``.
    dead_window: a latent is dead when it has not fired in this many training examples.

    Returns (params, history): history as ``autoencoder.adam``'s ("epoch",
    "cost", "elapsed", "step_cost", "steps_per_epoch", "status", "message";
    "cost" after epoch 0 is the mean J of that epoch's mini-batches), plus
    "model", "dead_window" and "dead_fraction" (the tracker's, at the start
    and after each epoch).
    """
    params = sae.check_params(params)
    n_hidden = params["W1"].shape[0]
    l1, k, aux_k, alpha, lam = _check_model_settings(model, n_hidden, l1, k, aux_k, alpha, lam)
    lr = check_positive_real("lr", lr)
    eps = check_positive_real("eps", eps)
    beta1 = check_unit_interval("beta1", beta1)
    beta2 = check_unit_interval("beta2", beta2)
    batch_size = validation.check_count("batch_size", batch_size)
    epochs = validation.check_count("epochs", epochs)
    check_callable("callback", callback)
    rng = sae.as_generator(rng)
    X = sae.check_X(X, params, decoder=None)         # once: checked, in the params' dtype
    m = X.shape[0]
    steps_per_epoch = math.ceil(m / batch_size)
    total_steps = epochs * steps_per_epoch
    cost_and_grad, cost_terms, encode = _model_functions(model, l1=l1, k=k, aux_k=aux_k,
                                                          alpha=alpha, lam=lam)
    use_dead = model == "topk" and aux_k is not None
    tracker = DeadLatentTracker(n_hidden, dead_window)

    params = copy_params(params)
    first_moment = {name: np.zeros_like(p) for name, p in params.items()}
    second_moment = {name: np.zeros_like(p) for name, p in params.items()}
    reporter = make_progress(progress, total_steps, "step", progress_every)
    if reporter is not None:
        reporter.format_terms = format_modern_terms

    def batch_terms(params_, x, checked=False):
        """J's parts on x, with L0 and normalized MSE on x and the tracker's dead fraction
        (checked: by the public functions, which refuse values too large to compute with)."""
        parts = cost_terms(params_, x, tracker.dead if use_dead else None, checked)
        a2 = encode(params_, x, checked)
        x_hat = (modern_sae.decode_linear if checked else modern_sae.decode_linear_unchecked)(params_, a2)
        return {"cost": parts["cost"],
                "parts": {name: value for name, value in parts.items()
                          if name != "cost" and (value != 0 or name == "reconstruction")},
                "l0": diagnostics.l0(a2),
                "normalized_mse": diagnostics.normalized_mse(x, x_hat),
                "dead_fraction": tracker.dead_fraction}

    start = time.perf_counter()
    history = {"optimizer": "adam", "model": model, "epoch": [0], "cost": [], "elapsed": [0.0],
               "step_cost": [], "steps_per_epoch": steps_per_epoch, "dead_window": tracker.window,
               "dead_fraction": [0.0], "status": "done", "message": f"{epochs} epochs"}
    with np.errstate(**QUIET):
        terms0 = batch_terms(params, X, checked=True)      # too large to compute with: refused, named
    if not math.isfinite(terms0["cost"]):
        raise ValueError(f"X: the cost at the initial parameters is {terms0['cost']}, expected a "
                         f"finite number; standardize X")
    history["cost"].append(terms0["cost"])
    if reporter is not None:
        reporter.report(0, lambda: terms0, note="  (all examples)")

    last_finite = params
    t = 0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(m)
        epoch_costs = []
        for start_row in range(0, m, batch_size):
            batch = X[order[start_row:start_row + batch_size]]      # (<= batch_size, n_visible)
            with np.errstate(**QUIET):
                cost, grads, fired = cost_and_grad(params, batch, tracker.dead if use_dead else None)
            if not all_finite(cost, grads):
                history["status"] = "nonfinite"
                history["message"] = (f"the cost or gradient became {cost} at step {t + 1} "
                                      f"(epoch {epoch}); try a smaller learning rate")
                return last_finite, finish_epoch(history, None, start)
            tracker.update_fired(fired, batch.shape[0])
            last_finite = params
            history["step_cost"].append(cost)
            epoch_costs.append(cost)
            t += 1
            with np.errstate(**QUIET):
                if model == "topk":                  # unit-norm decoder columns: project, step, renormalize
                    grads = {**grads, "W2": modern_sae.project_decoder_grad_unchecked(params["W2"], grads["W2"])}
                params = adam_update(params, grads, first_moment, second_moment,
                                            t, lr, beta1, beta2, eps)
                if model == "topk":
                    params["W2"] = modern_sae.normalize_decoder_unchecked(params["W2"])
            if not all(np.isfinite(p).all() for p in params.values()):
                history["status"] = "nonfinite"
                history["message"] = (f"the parameters became infinite or NaN at step {t} "
                                      f"(epoch {epoch}); try a smaller learning rate")
                return last_finite, finish_epoch(history, None, start)
            elapsed = time.perf_counter() - start
            if reporter is not None and reporter.due(t):
                reporter.report(t, lambda: batch_terms(params, batch),
                                note=f"  (epoch {epoch}, mini-batch)")
            if callback is not None and callback(
                    TrainingStep("adam", t, epoch, cost, params, elapsed)):
                history["status"], history["message"] = "stopped", "stopped by the callback"
                history["dead_fraction"].append(tracker.dead_fraction)
                return params, finish_epoch(history, float(np.mean(epoch_costs)), start)
        history["dead_fraction"].append(tracker.dead_fraction)
        finish_epoch(history, float(np.mean(epoch_costs)), start)
    return params, history


# ---------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------


class ModernAutoencoder:
    """The estimator for the ReLU + L1 and TopK models, beside ``autoencoder.SparseAutoencoder``.

        model = ModernAutoencoder(256, model="topk", k=16).fit(X)   # X (m, n_visible)
        A2 = model.encode(X)                 # (m, n_hidden): the TopK latents
        X_hat = model.reconstruct(X)         # (m, n_visible)
        model.metrics(X_test)                # L0, normalized MSE, dead latents, ...
        model.save("topk.npz"); model = load_autoencoder("topk.npz")

    Hyperparameters: n_hidden; model "relu_l1" or "topk"; l1 (ReLU + L1's
    penalty weight); k, aux_k (None: no AuxK) and alpha (TopK); lam (weight
    decay, default 0); lr, batch_size, epochs (Adam); dead_window; seed
    (initialization and shuffling); dtype. X may hold any finite values (the
    decoder is linear). After ``fit``: ``params_``, ``history_``,
    ``n_visible_``; ``extra_`` and ``info_`` as in ``SparseAutoencoder``.
    """

    def __init__(self, n_hidden, *, model="topk", l1=1.0, k=None, aux_k=None, alpha=1 / 32,
                 lam=0.0, lr=1e-3, batch_size=128, epochs=10, dead_window=DEFAULT_DEAD_WINDOW,
                 seed=0, dtype="float64"):
        self.n_hidden = validation.check_count("n_hidden", n_hidden)
        self.model = validation.check_choice("model", model, MODELS)
        self.l1, self.k, self.aux_k, self.alpha, self.lam = _check_model_settings(
            model, self.n_hidden, l1, k, aux_k, alpha, lam)
        self.lr = check_positive_real("lr", lr)
        self.batch_size = validation.check_count("batch_size", batch_size)
        self.epochs = validation.check_count("epochs", epochs)
        self.dead_window = validation.check_count("dead_window", dead_window)
        self.seed = validation.check_seed("seed", seed)
        self.dtype = validation.check_dtype("dtype", dtype).name
        self.params_ = None
        self.history_ = None
        self.n_visible_ = None
        self.extra_ = {}
        self.info_ = {}

    def hyperparameters(self):
        """The constructor's arguments (and n_visible once fitted), JSON-compatible."""
        values = {"n_hidden": self.n_hidden, "model": self.model, "l1": self.l1, "k": self.k,
                  "aux_k": self.aux_k, "alpha": self.alpha, "lam": self.lam, "lr": self.lr,
                  "batch_size": self.batch_size, "epochs": self.epochs,
                  "dead_window": self.dead_window, "seed": self.seed, "dtype": self.dtype}
        if self.n_visible_ is not None:
            values["n_visible"] = self.n_visible_
        return values

    def _settings(self):
        return {"l1": self.l1, "k": self.k, "aux_k": self.aux_k, "alpha": self.alpha, "lam": self.lam}

    def fit(self, X, *, callback=None, progress=True, progress_every=2.0):
        """Initialize (seeded; b2 = the mean of X) and train on X (m, n_visible); returns self."""
        X = as_2d("X", X)
        rng = np.random.default_rng(self.seed)
        init = modern_sae.init_topk if self.model == "topk" else modern_sae.init_relu_l1
        params = init(X.shape[1], self.n_hidden, rng=rng, dtype=np.dtype(self.dtype), X=X)
        params, history = adam_modern(
            params, X, model=self.model, lr=self.lr, batch_size=self.batch_size,
            epochs=self.epochs, dead_window=self.dead_window, rng=rng, callback=callback,
            progress=progress, progress_every=progress_every, **self._settings())
        self.params_, self.history_, self.n_visible_ = params, history, X.shape[1]
        return self

    def _fitted_params(self):
        if self.params_ is None:
            raise RuntimeError("this ModernAutoencoder is not fitted yet: call fit(X) or load(path)")
        return self.params_

    def _encode(self, X):
        if self.model == "topk":
            return modern_sae.encode_topk(self.params_, X, self.k)
        return modern_sae.encode_relu(self.params_, X)

    def encode(self, X):
        """The latents a2 (m, n_hidden): ReLU's, or TopK's k largest (ReLU applied) per row."""
        X = sae.check_X(X, self._fitted_params(), decoder=None)
        return self._encode(X)

    def reconstruct(self, X):
        """x_hat = a2 W2^T + b2, (m, n_visible)."""
        return modern_sae.decode_linear(self.params_, self.encode(X))

    def cost_terms(self, X):
        """The parts of J on X (``modern_sae.relu_l1_cost_terms`` / ``topk_cost_terms``), no AuxK."""
        X = sae.check_X(X, self._fitted_params(), decoder=None)
        if self.model == "topk":
            return modern_sae.topk_cost_terms(self.params_, X, k=self.k, lam=self.lam)
        return modern_sae.relu_l1_cost_terms(self.params_, X, l1=self.l1, lam=self.lam)

    def metrics(self, X, block_size=4096):
        """``diagnostics.sparsity_metrics`` on X: L0, normalized MSE, dead latents, firing fractions."""
        X = sae.check_X(X, self._fitted_params(), decoder=None)
        return diagnostics.sparsity_metrics(
            self._encode, lambda a2: modern_sae.decode_linear(self.params_, a2), X,
            threshold=0.0, block_size=block_size)

    def save(self, path, extra=None, info=None):
        """Save params, hyperparameters (with "model"), history and arrays (``model_file.save_model``)."""
        params = self._fitted_params()
        for name, value in (("extra", extra), ("info", info)):
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"{name}: expected a dict, got {type(value).__name__}")
        hyperparameters = self.hyperparameters()
        settings = {key: value for key, value in hyperparameters.items() if key != "n_visible"}
        type(self)(**settings)           # what load would refuse (attributes changed after fit)
        info = {**(self.info_ or {}), **(info or {})}
        if info:
            hyperparameters["info"] = info
        return save_model(path, params, hyperparameters, history=self.history_,
                          extra={**(self.extra_ or {}), **(extra or {})})

    @classmethod
    def load(cls, path):
        """A fitted estimator from a file written by ``save``.

        A file of the notes' sigmoid model is refused with a ValueError that
        names it: ``loading.load_autoencoder`` loads a file of any model.
        """
        params, hyperparameters, history, extra = load_model(path)
        name = model_name(hyperparameters)
        if name not in MODELS:
            raise ValueError(f"model file {path}: holds the {name!r} model, expected one of "
                             f"{', '.join(map(repr, MODELS))}; load it with "
                             f"saelab.training.loading.load_autoencoder(path)")
        return estimator_from_file(cls, path, (params, hyperparameters, history, extra), (
            "model", "l1", "k", "aux_k", "alpha", "lam", "lr", "batch_size", "epochs",
            "dead_window", "seed", "dtype"))
