"""Training today's sparse autoencoders (ReLU + L1, TopK): mini-batch Adam, dead latents, AuxK.

The models themselves (forward pass, cost, hand-derived gradient) are in
``modern_sae.py``; this module trains them, as ``autoencoder`` trains the
notes' model, and shares its Adam update, progress lines, callbacks and
model file (``common``, ``saelab.files.model_file``).

    adam_modern(params, X, model=..., ...)   mini-batch Adam for "relu_l1" or "topk"
    DeadLatentTracker(n_hidden, window)      which latents have not fired in the last N examples
    RECIPES                                  each model's training recipe (below)
    input_scale(X), fold_input_scale(params, s)   Anthropic's input scaling, and folding it away
    ModernAutoencoder                        the estimator: fit / encode / reconstruct /
                                             metrics / feature_density / save / load

Training, step by step (one mini-batch of rows of X, step t of T):

1. dead = the latents that have not fired (a2 > 0) on any of the last
   ``dead_window`` training examples seen (``DeadLatentTracker``).
2. The cost and gradient on the batch, by the tuned ``fast.relu_l1_unchecked`` /
   ``fast.topk_unchecked`` (the same numbers as ``modern_sae.relu_l1_cost_and_grad``
   / ``topk_cost_and_grad``, tests/test_fast_path.py), which also say which
   latents fired. ReLU + L1 uses l1_t = l1 min(1, (t - 1) / W): the penalty
   warms up linearly over the first W = l1_warmup T steps. TopK with
   ``aux_k``: the cost includes the AuxK loss on the dead latents
   (``dead=dead``), weighted alpha c with c = ``modern_sae.mean_prediction_scale``
   of all of X, computed once (``aux_scale``).
3. TopK, in the order of OpenAI's train.py: the decoder's columns are
   normalized to unit length (``modern_sae.normalize_decoder``), then each
   column of the W2 gradient loses its component along that column
   (``modern_sae.project_decoder_grad``).
4. clip_grad_norm c: if the gradient's norm (all four blocks together) is
   above c, it is scaled down to c.
5. The Adam update of ``autoencoder.adam`` (the same formula and defaults), at
   lr_t = lr min(1, (T - t + 1) / D): the rate decays linearly to 0 over the
   last D = lr_decay T steps.
6. The tracker counts the batch: latents that fired on it are alive again.

RECIPES: ReLU + L1 is trained as Anthropic's April 2024 update says (inputs
scaled so that the mean of ||x||^2 is n_visible, ``input_scale``; l1 warm-up
over 5% of the steps; the rate decays over the last 20%; gradient norm
clipped), TopK as Gao et al.'s code (none of these). Which source each rule
comes from: docs/modern_sae.md.

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

# Each model's training recipe: what ModernAutoencoder uses unless told otherwise.
#   input_scaling   scale X by input_scale(X) before training (and fold the scale into the params after)
#   l1_warmup       the fraction of the steps over which l1 rises linearly from 0
#   lr_decay        the fraction of the steps (the last ones) over which the rate falls linearly to 0
#   clip_grad_norm  None, or the largest norm of the gradient of J (0.5: Anthropic's 1 on their
#                   loss, which is 2 J: J keeps the notes' 1/2)
RECIPES = {
    "relu_l1": {"input_scaling": True, "l1_warmup": 0.05, "lr_decay": 0.2, "clip_grad_norm": 0.5},
    "topk": {"input_scaling": False, "l1_warmup": 0.0, "lr_decay": 0.0, "clip_grad_norm": None},
}


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
        """Count one mini-batch: a2 (b, n_hidden), its latents."""
        a2 = np.asarray(a2)
        if a2.ndim != 2 or a2.shape[1] != self.since_fired.size:
            raise ValueError(f"a2: expected a 2-D array (b, n_hidden) = (b, {self.since_fired.size}), "
                             f"got shape {a2.shape}")
        self.update_fired(np.any(a2 > 0, axis=0), a2.shape[0])

    def update_fired(self, fired, rows):
        """The same from ``fired`` (n_hidden,) bool, the latents that fired on ``rows`` examples."""
        if (not isinstance(fired, np.ndarray) or fired.dtype != np.bool_
                or fired.shape != self.since_fired.shape):
            raise ValueError(f"fired: expected a bool array ({self.since_fired.size},), one flag per "
                             f"latent, got {getattr(fired, 'dtype', type(fired).__name__)} of shape "
                             f"{np.shape(fired)}")
        rows = validation.check_count("rows", rows)
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


def _model_functions(model, *, k, aux_k, alpha, lam, aux_scale):
    """(step(params, x, dead, l1), cost_terms(params, x, dead, l1, checked), encode(params, x, checked)).

    step returns (cost, grads, fired): the tuned, unchecked ``fast.relu_l1_unchecked`` /
    ``fast.topk_unchecked`` (X and the settings are checked once by ``adam_modern``);
    l1 is the step's (ReLU + L1's warm-up), unused by TopK.
    cost_terms and encode: with checked=True the public functions, which
    refuse values too large to compute with naming the culprit
    (``validation.check_modern_magnitudes``; at the start), with
    checked=False their unchecked bodies (progress lines during training: a
    run whose parameters grow too large is reported, then stops as "nonfinite").
    """
    validation.check_choice("model", model, MODELS)
    if model == "relu_l1":
        def cost_and_grad(params, x, dead, l1):
            terms, grads, fired = fast.relu_l1_unchecked(params, x, l1, lam)
            return terms["cost"], grads, fired

        def cost_terms(params, x, dead, l1, checked):
            if checked:
                return modern_sae.relu_l1_cost_terms(params, x, l1=l1, lam=lam)
            return modern_sae.relu_l1_cost_terms_unchecked(params, x, l1, lam)

        def encode(params, x, checked):
            return (modern_sae.encode_relu if checked else modern_sae.encode_relu_unchecked)(params, x)

        return cost_and_grad, cost_terms, encode

    def cost_and_grad(params, x, dead, l1):
        terms, grads, fired = fast.topk_unchecked(params, x, k, aux_k, alpha, dead, lam, 0.0,
                                                  aux_scale)
        return terms["cost"], grads, fired

    def cost_terms(params, x, dead, l1, checked):
        if checked:
            return modern_sae.topk_cost_terms(params, x, k=k, aux_k=aux_k, alpha=alpha,
                                              dead=dead, lam=lam, aux_scale=aux_scale)
        return modern_sae.topk_cost_terms_unchecked(params, x, k, aux_k, alpha, dead, lam, 0.0,
                                                    aux_scale)

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


def _check_fraction(name, value):
    """A fraction of the training steps, in [0, 1); returned as a Python float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name}: expected a fraction of the steps in [0, 1), got {value!r}")
    if not 0 <= value < 1:
        raise ValueError(f"{name}: expected a fraction of the steps in [0, 1), got {value!r}")
    return float(value)


def _check_clip(value):
    return None if value is None else check_positive_real("clip_grad_norm", value)


def schedule(t, total_steps, warmup, decay):
    """(l1 factor, lr factor) of step t (1-based) of total_steps: a linear warm-up from 0 over
    the first round(warmup * total) steps, a linear decay to 0 over the last round(decay * total).

        l1_t = l1 min(1, (t - 1) / W)          the first step has no penalty (as SAELens and
        lr_t = lr min(1, (T - t + 1) / D)      dictionary_learning count); the last step has lr / D
    """
    warmup_steps = round(warmup * total_steps)
    decay_steps = round(decay * total_steps)
    l1_factor = min(1.0, (t - 1) / warmup_steps) if warmup_steps else 1.0
    lr_factor = min(1.0, (total_steps - t + 1) / decay_steps) if decay_steps else 1.0
    return l1_factor, lr_factor


def clip_gradient(grads, max_norm):
    """(grads, norm): grads scaled down to norm max_norm if their norm (all blocks together)
    is larger (new arrays then), else unchanged; norm is the norm before clipping."""
    norm = math.sqrt(sum(float(np.sum(np.square(g, dtype=np.float64))) for g in grads.values()))
    if max_norm is None or not norm > max_norm:
        return grads, norm
    factor = max_norm / norm
    return {name: g * g.dtype.type(factor) for name, g in grads.items()}, norm


def adam_modern(params, X, *, model, l1=1.0, k=None, aux_k=None, alpha=1 / 32, lam=0.0,
                aux_scale=None, l1_warmup=0.0, lr_decay=0.0, clip_grad_norm=None,
                lr=1e-3, batch_size=128, epochs=10, beta1=0.9, beta2=0.999, eps=1e-8,
                dead_window=DEFAULT_DEAD_WINDOW, rng=None, callback=None, progress=True,
                progress_every=2.0):
    """Mini-batch Adam for the ReLU + L1 or the TopK model (steps in the module docstring).

    params: initial params (``modern_sae.init_relu_l1`` / ``init_topk``), not
        modified; their dtype is the computation's.
    X: (m, n_visible) training data, any finite values (checked once). Scale
        it first if the recipe says so (``ModernAutoencoder.fit`` does).
    model: "relu_l1" (uses l1) or "topk" (uses k, and aux_k, alpha for AuxK:
        aux_k None = no AuxK). lam: weight decay (0 in the papers).
    aux_scale: c of AuxK's weight alpha c; None: ``modern_sae.mean_prediction_scale(X)``,
        computed once (the paper's relative weight).
    l1_warmup, lr_decay: fractions of the steps in [0, 1) (0: none); clip_grad_norm:
        None or > 0. ``RECIPES`` has each model's values; the defaults here are off.
    lr, batch_size, epochs, beta1, beta2, eps, rng, callback, progress,
        progress_every: as ``autoencoder.adam``.
    dead_window: a latent is dead when it has not fired in this many training examples.

    Returns (params, history): history as ``autoencoder.adam``'s ("epoch",
    "cost", "elapsed", "step_cost", "steps_per_epoch", "status", "message";
    "cost" after epoch 0 is the mean J of that epoch's mini-batches; J of a
    step uses that step's l1), plus "model", "dead_window", "dead_fraction"
    (the tracker's, at the start and after each epoch), "aux_scale" (c, or
    None without AuxK) and "clipped_steps" (how many steps clip_grad_norm scaled down).
    """
    params = sae.check_params(params)
    n_hidden = params["W1"].shape[0]
    l1, k, aux_k, alpha, lam = _check_model_settings(model, n_hidden, l1, k, aux_k, alpha, lam)
    if aux_scale is not None:
        aux_scale = _check_nonnegative("aux_scale", aux_scale)
    l1_warmup = _check_fraction("l1_warmup", l1_warmup)
    lr_decay = _check_fraction("lr_decay", lr_decay)
    clip_grad_norm = _check_clip(clip_grad_norm)
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
    use_dead = model == "topk" and aux_k is not None
    if use_dead and batch_size < 2:
        raise ValueError(f"batch_size: AuxK divides by the spread of the residuals over a "
                         f"mini-batch, which needs at least 2 rows, got {batch_size}")
    if use_dead and m < 2:
        raise ValueError(f"X: AuxK divides by the spread of the residuals over a mini-batch, "
                         f"which needs at least 2 examples, got {m}")
    bounds = batch_bounds(m, batch_size, min_rows=2 if use_dead else 1)
    steps_per_epoch = len(bounds)
    total_steps = epochs * steps_per_epoch
    if use_dead and aux_scale is None:
        aux_scale = modern_sae.mean_prediction_scale(X)   # once, on all of X (OpenAI: mse_scale)
    cost_and_grad, cost_terms, encode = _model_functions(model, k=k, aux_k=aux_k, alpha=alpha,
                                                          lam=lam, aux_scale=aux_scale)
    tracker = DeadLatentTracker(n_hidden, dead_window)

    params = copy_params(params)
    first_moment = {name: np.zeros_like(p) for name, p in params.items()}
    second_moment = {name: np.zeros_like(p) for name, p in params.items()}
    reporter = make_progress(progress, total_steps, "step", progress_every)
    if reporter is not None:
        reporter.format_terms = format_modern_terms

    def batch_terms(params_, x, l1_now, checked=False):
        """J's parts on x, with L0 and normalized MSE on x and the tracker's dead fraction
        (checked: by the public functions, which refuse values too large to compute with)."""
        parts = cost_terms(params_, x, tracker.dead if use_dead else None, l1_now, checked)
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
               "dead_fraction": [0.0], "aux_scale": aux_scale, "clipped_steps": 0,
               "status": "done", "message": f"{epochs} epochs"}
    l1_first = l1 * schedule(1, total_steps, l1_warmup, lr_decay)[0]
    with np.errstate(**QUIET):
        terms0 = batch_terms(params, X, l1_first, checked=True)   # too large: refused, named
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
        for start_row, stop_row in bounds:
            batch = X[order[start_row:stop_row]]                    # (about batch_size, n_visible)
            l1_factor, lr_factor = schedule(t + 1, total_steps, l1_warmup, lr_decay)
            l1_now = l1 * l1_factor
            with np.errstate(**QUIET):
                cost, grads, fired = cost_and_grad(params, batch, tracker.dead if use_dead else None,
                                                   l1_now)
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
                if model == "topk":   # unit-norm decoder columns: normalize, project, then step
                    params = {**params, "W2": modern_sae.normalize_decoder_unchecked(params["W2"])}
                    grads = {**grads, "W2": modern_sae.project_decoder_grad_unchecked(params["W2"],
                                                                                     grads["W2"])}
                grads, norm = clip_gradient(grads, clip_grad_norm)
                if clip_grad_norm is not None and norm > clip_grad_norm:
                    history["clipped_steps"] += 1
                params = adam_update(params, grads, first_moment, second_moment,
                                     t, lr * lr_factor, beta1, beta2, eps)
            if not all(np.isfinite(p).all() for p in params.values()):
                history["status"] = "nonfinite"
                history["message"] = (f"the parameters became infinite or NaN at step {t} "
                                      f"(epoch {epoch}); try a smaller learning rate")
                return last_finite, finish_epoch(history, None, start)
            elapsed = time.perf_counter() - start
            if reporter is not None and reporter.due(t):
                reporter.report(t, lambda: batch_terms(params, batch, l1_now),
                                note=f"  (epoch {epoch}, mini-batch)")
            if callback is not None and callback(
                    TrainingStep("adam", t, epoch, cost, params, elapsed)):
                history["status"], history["message"] = "stopped", "stopped by the callback"
                history["dead_fraction"].append(tracker.dead_fraction)
                return params, finish_epoch(history, float(np.mean(epoch_costs)), start)
        history["dead_fraction"].append(tracker.dead_fraction)
        finish_epoch(history, float(np.mean(epoch_costs)), start)
    return params, history


def batch_bounds(m, batch_size, min_rows=1):
    """[(start, stop)] of one epoch's mini-batches over m rows: batch_size rows each, the last
    one what is left; a last batch of fewer than min_rows rows joins the one before it.

    AuxK needs min_rows = 2: it divides by the spread of the residuals over the batch, which
    is 0 for one row (m % batch_size == 1 would otherwise end every epoch on such a batch).
    """
    bounds = [(start, min(start + batch_size, m)) for start in range(0, m, batch_size)]
    if len(bounds) > 1 and bounds[-1][1] - bounds[-1][0] < min_rows:
        _, stop = bounds.pop()
        bounds[-1] = (bounds[-1][0], stop)
    return bounds


def input_scale(X):
    """s = sqrt(n_visible / mean_i ||x_i||^2): the one constant that makes the mean of
    ||s x_i||^2 equal n_visible (Anthropic's scaling, "Scaling Monosemanticity"). X (m, n_visible)
    with some nonzero value; returns a Python float (computed in float64)."""
    X = np.asarray(X)
    mean_square_norm = float(np.mean(np.sum(np.square(X, dtype=np.float64), axis=1)))
    if not mean_square_norm > 0 or not math.isfinite(mean_square_norm):
        raise ValueError(f"X: input scaling needs rows with a finite, nonzero mean squared norm, "
                         f"got {mean_square_norm}")
    return math.sqrt(X.shape[1] / mean_square_norm)


def fold_input_scale(params, s):
    """The params of a model trained on s X, rewritten to act on X itself (new arrays).

    f = ReLU(W1 (s x) + b1) = ReLU((s W1) x + b1), and the reconstruction of x
    is (W2 f + b2) / s = (W2 / s) f + b2 / s: so W1 -> s W1, W2 -> W2 / s,
    b2 -> b2 / s, b1 unchanged. The latents are the same numbers. SAELens and
    dictionary_learning fold their scaling factor into the saved model the
    same way. fold_input_scale(params, 1 / s) undoes it.
    """
    dtype = params["W1"].dtype.type
    return {"W1": params["W1"] * dtype(s), "b1": params["b1"].copy(),
            "W2": params["W2"] / dtype(s), "b2": params["b2"] / dtype(s)}


# ---------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------


class ModernAutoencoder:
    """The estimator for the ReLU + L1 and TopK models, beside ``autoencoder.SparseAutoencoder``.

        model = ModernAutoencoder(256, model="topk", k=16).fit(X)   # X (m, n_visible)
        A2 = model.encode(X)                 # (m, n_hidden): the TopK latents
        X_hat = model.reconstruct(X)         # (m, n_visible)
        model.metrics(X_test)                # L0, normalized MSE, dead latents, ...
        model.feature_density(X_test)        # the histogram of log10 firing frequencies
        model.save("topk.npz"); model = load_autoencoder("topk.npz")

    Hyperparameters: n_hidden; model "relu_l1" or "topk"; l1 (ReLU + L1's
    penalty weight); k, aux_k (None: no AuxK) and alpha (TopK; alpha relative
    to the data's variance, the paper's 1/32; aux_scale: the c of AuxK's
    weight alpha c, None for ``modern_sae.mean_prediction_scale`` of the
    training data, 1.0 for alpha alone); lam (weight decay, default 0);
    input_scaling, l1_warmup, lr_decay, clip_grad_norm (None: the model's
    ``RECIPES``); lr, batch_size, epochs (Adam); dead_window; seed
    (initialization and shuffling); dtype. X may hold any finite values (the
    decoder is linear). After ``fit``: ``params_`` (acting on X as given: an
    input scale is folded in, ``fold_input_scale``), ``history_`` (with
    "input_scale", 1.0 without scaling), ``n_visible_``; ``extra_`` and
    ``info_`` as in ``SparseAutoencoder``.
    """

    def __init__(self, n_hidden, *, model="topk", l1=1.0, k=None, aux_k=None, alpha=1 / 32,
                 lam=0.0, aux_scale=None, input_scaling=None, l1_warmup=None, lr_decay=None, clip_grad_norm=None,
                 lr=1e-3, batch_size=128, epochs=10, dead_window=DEFAULT_DEAD_WINDOW,
                 seed=0, dtype="float64"):
        self.n_hidden = validation.check_count("n_hidden", n_hidden)
        self.model = validation.check_choice("model", model, MODELS)
        self.l1, self.k, self.aux_k, self.alpha, self.lam = _check_model_settings(
            model, self.n_hidden, l1, k, aux_k, alpha, lam)
        self.aux_scale = None if aux_scale is None else _check_nonnegative("aux_scale", aux_scale)
        recipe = RECIPES[self.model]
        if input_scaling is None:
            input_scaling = recipe["input_scaling"]
        if not isinstance(input_scaling, bool):
            raise TypeError(f"input_scaling: expected True, False or None, got {input_scaling!r}")
        self.input_scaling = input_scaling
        self.l1_warmup = _check_fraction("l1_warmup", recipe["l1_warmup"] if l1_warmup is None
                                         else l1_warmup)
        self.lr_decay = _check_fraction("lr_decay", recipe["lr_decay"] if lr_decay is None
                                        else lr_decay)
        self.clip_grad_norm = _check_clip(recipe["clip_grad_norm"] if clip_grad_norm is None
                                          else clip_grad_norm)
        self.lr = check_positive_real("lr", lr)
        self.batch_size = validation.check_count("batch_size", batch_size)
        if self.model == "topk" and self.aux_k is not None and self.batch_size < 2:
            raise ValueError(f"batch_size: AuxK divides by the spread of the residuals over a "
                             f"mini-batch, which needs at least 2 rows, got {batch_size}")
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
                  "aux_k": self.aux_k, "alpha": self.alpha, "lam": self.lam,
                  "aux_scale": self.aux_scale, "input_scaling": self.input_scaling, "l1_warmup": self.l1_warmup,
                  "lr_decay": self.lr_decay, "clip_grad_norm": self.clip_grad_norm, "lr": self.lr,
                  "batch_size": self.batch_size, "epochs": self.epochs,
                  "dead_window": self.dead_window, "seed": self.seed, "dtype": self.dtype}
        if self.n_visible_ is not None:
            values["n_visible"] = self.n_visible_
        return values

    def _settings(self):
        return {"l1": self.l1, "k": self.k, "aux_k": self.aux_k, "alpha": self.alpha, "lam": self.lam,
                "aux_scale": self.aux_scale, "l1_warmup": self.l1_warmup, "lr_decay": self.lr_decay,
                "clip_grad_norm": self.clip_grad_norm}

    def fit(self, X, *, callback=None, progress=True, progress_every=2.0):
        """Initialize (seeded) and train on X (m, n_visible); returns self.

        ReLU + L1: ``init_relu_l1``; with input_scaling, trained on s X
        (s = ``input_scale(X)``) and s folded into the params afterwards.
        TopK: ``init_topk`` (b2 = the geometric median of X's first rows).
        """
        X = as_2d("X", X)
        rng = np.random.default_rng(self.seed)
        dtype = np.dtype(self.dtype)
        if self.model == "topk":
            params = modern_sae.init_topk(X.shape[1], self.n_hidden, rng=rng, dtype=dtype, X=X)
        else:
            params = modern_sae.init_relu_l1(X.shape[1], self.n_hidden, rng=rng, dtype=dtype)
        scale = input_scale(X) if self.input_scaling else 1.0
        X_train = X if scale == 1.0 else sae.check_X(X, params, decoder=None) * dtype.type(scale)
        params, history = adam_modern(
            params, X_train, model=self.model, lr=self.lr, batch_size=self.batch_size,
            epochs=self.epochs, dead_window=self.dead_window, rng=rng, callback=callback,
            progress=progress, progress_every=progress_every, **self._settings())
        history["input_scale"] = scale
        if scale != 1.0:
            params = fold_input_scale(params, scale)
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

    def trained_input_scale(self):
        """The input scale s the model was trained with (1.0 without scaling)."""
        return float((self.history_ or {}).get("input_scale", 1.0))

    def cost_terms(self, X):
        """The parts of the training objective J on X, no AuxK: ``modern_sae.relu_l1_cost_terms``
        / ``topk_cost_terms`` of the model as trained (ReLU + L1: its unfolded params on s X)."""
        X = sae.check_X(X, self._fitted_params(), decoder=None)
        if self.model == "topk":
            return modern_sae.topk_cost_terms(self.params_, X, k=self.k, lam=self.lam)
        s = self.trained_input_scale()
        params = self.params_ if s == 1.0 else fold_input_scale(self.params_, 1 / s)
        return modern_sae.relu_l1_cost_terms(params, X * X.dtype.type(s), l1=self.l1, lam=self.lam)

    def metrics(self, X, block_size=4096):
        """``diagnostics.sparsity_metrics`` on X: L0, normalized MSE, dead latents, firing fractions."""
        X = sae.check_X(X, self._fitted_params(), decoder=None)
        return diagnostics.sparsity_metrics(
            self._encode, lambda a2: modern_sae.decode_linear(self.params_, a2), X,
            threshold=0.0, block_size=block_size)

    def feature_density(self, X, block_size=4096):
        """``diagnostics.feature_density`` of the latents' firing fractions on X: the histogram
        of log10 of the fraction of rows on which each latent fires (dead ones counted apart)."""
        return diagnostics.feature_density(self.metrics(X, block_size)["firing_fractions"])

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
        if name == "relu_l1" and "l1_warmup" not in hyperparameters:
            raise ValueError(f"model file {path}: a ReLU + L1 model saved before the April 2024 "
                             f"recipe (its encoder subtracted b2 first, which this one does not): "
                             f"train it again")
        return estimator_from_file(cls, path, (params, hyperparameters, history, extra), (
            "model", "l1", "k", "aux_k", "alpha", "lam", "aux_scale", "input_scaling", "l1_warmup", "lr_decay",
            "clip_grad_norm", "lr", "batch_size", "epochs", "dead_window", "seed", "dtype"))
