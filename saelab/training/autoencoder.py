"""Training the sparse autoencoder: L-BFGS (the notes) and mini-batch Adam (the blog post).

Functions
---------
    lbfgs(params, X, ...)      full-batch L-BFGS-B from SciPy over the packed parameters
    adam(params, X, ...)       mini-batch Adam written out in NumPy
    SparseAutoencoder          a thin estimator (fit / encode / reconstruct / save / load)

The progress lines, Ctrl-C handling (``StopOnInterrupt``) and the Adam
update are in ``common``, shared with ``modern``; the file format in
``saelab.files.model_file``.

Both optimizers
---------------
* validate X once (``check_X``) and convert it to the params' dtype once;
* compute in the params' dtype (float32 or float64) end to end;
* print a progress line at most every ``progress_every`` seconds (and at the
  first and last step; for Adam, less often if computing the line's cost
  parts would take more than about 5% of the run; L-BFGS prints those of its
  latest evaluation, at no cost): step, cost J and its reconstruction /
  weight-decay / sparsity parts, mean rho_hat, elapsed time and an estimate
  of time left;
* call ``callback(step)`` after every step with a ``TrainingStep``; if it
  returns True the run stops cleanly and the parameters reached so far are
  returned (this is how a caller handles Ctrl-C: set a flag in a signal
  handler, return it from the callback);
* stop by themselves when the cost, the gradient or (Adam) the updated
  parameters stop being finite, returning the last parameters whose cost
  was finite (``history["status"] == "nonfinite"``, ``history["message"]``
  says where); overflow on the way there is not warned about, it is what
  they test for (in the model's domain nothing overflows);
* return ``(params, history)``: the trained params (a new dict, the input is
  not modified) and a dict with the cost per iteration or epoch for plotting.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import time
from pathlib import Path

import numpy as np

import fast
import sparse_autoencoder as sae
from saelab.checks import validation
from saelab.files.model_file import NOTES_MODEL, load_model, model_name, save_model
from saelab.training.common import (QUIET, TrainingStep, adam_update, all_finite, as_2d,
                                    check_callable, check_positive_real, check_unit_interval,
                                    copy_params, estimator_from_file, finish_epoch, make_progress)

COST_KEYS = ("penalty", "rho", "beta", "lam", "decoder")
OPTIMIZERS = ("lbfgs", "adam")


# ---------------------------------------------------------------------------
# Argument checks shared by the optimizers
# ---------------------------------------------------------------------------


def _cost_kwargs(penalty, rho, beta, lam, decoder):
    validation.check_choice("penalty", penalty, sae.PENALTIES)
    validation.check_choice("decoder", decoder, sae.DECODERS)
    validation.check_hyperparameters(rho=rho, beta=beta, lam=lam)
    return {"penalty": penalty, "rho": float(rho), "beta": float(beta),
            "lam": float(lam), "decoder": decoder}


def _initial_terms(params, X, cost_kwargs):
    """cost_terms at the start; a clear error naming the culprit if J is not finite there.

    The checks of ``fast.cost_terms`` (``validation.check_magnitudes``) refuse
    values too large to compute with, naming lam, beta, X or the params; the
    test below is a second line, blaming the part of J that is not finite.
    """
    with np.errstate(**QUIET):
        terms = fast.cost_terms(params, X, **cost_kwargs)
    culprits = {"weight_decay": ("lam", cost_kwargs["lam"]), "sparsity": ("beta", cost_kwargs["beta"])}
    for part in ("weight_decay", "sparsity", "reconstruction"):
        if not math.isfinite(terms[part]):
            name, value = culprits.get(part, ("X", float(np.abs(X).max())))
            raise ValueError(f"{name}: the {part.replace('_', ' ')} part of J at the initial "
                             f"parameters is {terms[part]} with {name} {value!r}, expected a finite "
                             f"number" + ("; standardize X" if name == "X" else ""))
    return terms


# ---------------------------------------------------------------------------
# L-BFGS
# ---------------------------------------------------------------------------


class _StopRequested(Exception):
    """Raised inside SciPy's loop to leave it between iterations."""


@contextlib.contextmanager
def single_threaded_scipy_blas():
    """Run SciPy's own BLAS on one thread inside the block; restore it after.

    NumPy's and SciPy's wheels each ship an OpenBLAS with its own pool of
    threads. L-BFGS-B's vector work (SciPy's BLAS) is small, but with two
    threads its idle workers keep spinning on the cores that NumPy's BLAS
    needs for the next cost_and_grad, and the other way round. On the
    project's 2-core machine one SciPy thread made L-BFGS on 10,000 MNIST
    images 25% faster per evaluation (310 ms against 400 ms, 784 -> 196,
    same final cost). Finds the library through /proc/self/maps (Linux);
    elsewhere, or if the library is not found, it does nothing.
    """
    lib = _scipy_openblas()
    previous = lib.scipy_openblas_get_num_threads() if lib is not None else None
    if lib is not None:
        lib.scipy_openblas_set_num_threads(1)
    try:
        yield
    finally:
        if lib is not None:
            lib.scipy_openblas_set_num_threads(previous)


def _scipy_openblas():
    """SciPy's bundled OpenBLAS (loaded by scipy.optimize) through ctypes, or None."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = {line.split()[-1] for line in maps.splitlines() if "libscipy_openblas-" in line}
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
            lib.scipy_openblas_set_num_threads.argtypes = [ctypes.c_int]
            lib.scipy_openblas_get_num_threads.restype = ctypes.c_int
            return lib
        except (OSError, AttributeError):
            continue
    return None


def lbfgs(params, X, *, max_iter=400, penalty="kl", rho=0.01, beta=3.0, lam=1e-4,
          decoder="sigmoid", callback=None, progress=True, progress_every=2.0, maxcor=10):
    """Minimize J over all of X with SciPy's L-BFGS-B (the notes used minFunc's L-BFGS).

    params: initial params (see ``sparse_autoencoder.init_params``); their
        dtype is the dtype of the computation. They are not modified.
    X: (m, n_visible) training data, checked and converted once.
    max_iter: at most this many L-BFGS iterations (the notes: 400). SciPy may
        stop earlier when its tolerances are met; history says why.
    penalty, rho, beta, lam, decoder: as in ``cost_and_grad``.
    callback: called as ``callback(TrainingStep)`` after each iteration;
        return True to stop (the params of that iteration are returned).
    progress: True (print to stdout), a file object, or False/None (silent).
    maxcor: number of correction pairs L-BFGS keeps (SciPy's default 10).

    L-BFGS-B works on float64 vectors theta = pack(params). Each evaluation
    converts theta to the params' dtype, computes J and its gradient as
    ``cost_and_grad`` does (without its checks: X and the hyperparameters
    were checked once) and hands SciPy the gradient as float64, so float32
    training computes in float32.
    The progress lines and the callback's cost reuse the cost parts of that
    evaluation (no extra forward pass), since L-BFGS-B's accepted iterate is
    almost always the point it evaluated last.

    Returns (params, history); history has "iteration" (0 = the start),
    "cost" (J at each iteration), "elapsed" (seconds), "status" ("done",
    "stopped" or "nonfinite"), "message" (SciPy's or ours), "n_evaluations".
    """
    from scipy.optimize import minimize  # scipy only where L-BFGS is used

    params = sae.check_params(params)
    cost_kwargs = _cost_kwargs(penalty, rho, beta, lam, decoder)
    max_iter = validation.check_count("max_iter", max_iter)
    maxcor = validation.check_count("maxcor", maxcor)
    check_callable("callback", callback)
    X = sae.check_X(X, params, decoder)          # once: checked, in the params' dtype
    dtype = params["W1"].dtype
    n_hidden, n_visible = params["W1"].shape

    def as_params(theta):
        return sae.unpack(theta.astype(dtype, copy=True), n_visible, n_hidden)

    last = {"theta": None, "terms": None}        # the latest evaluation, reused by the callback
    n_evaluations = 0

    def fun(theta):
        nonlocal n_evaluations
        n_evaluations += 1
        params_ = as_params(theta)
        if not all(np.isfinite(p).all() for p in params_.values()):
            raise FloatingPointError(f"the parameters became infinite or NaN at evaluation "
                                     f"{n_evaluations}")
        with np.errstate(**QUIET):
            # X, the hyperparameters and params_ (finite, the model's shapes) are
            # checked already: the unchecked path skips a pass over X per evaluation.
            terms, grads = fast.cost_terms_and_grad_unchecked(params_, X, **cost_kwargs)
        cost = terms["cost"]
        if not all_finite(cost, grads):
            raise FloatingPointError(f"the cost or gradient became {cost} at evaluation {n_evaluations}")
        last["theta"], last["terms"] = theta.copy(), terms
        return cost, sae.pack(grads).astype(np.float64)

    def terms_at(theta):
        """The parts of J at theta: from the latest evaluation when theta is that
        point (at almost every iteration: L-BFGS-B's accepted step is the last
        point it evaluated), else from a forward pass."""
        if last["theta"] is not None and np.array_equal(theta, last["theta"]):
            return last["terms"]
        with np.errstate(**QUIET):                  # unchecked: a diverging run is reported
            return fast.cost_terms_unchecked(as_params(theta), X, **cost_kwargs)

    reporter = make_progress(progress, max_iter, "iter", progress_every)
    start = time.perf_counter()
    theta0 = sae.pack(params).astype(np.float64)
    history = {"optimizer": "lbfgs", "iteration": [0], "cost": [], "elapsed": [0.0],
               "status": "done", "message": "", "n_evaluations": 0}
    best = {"theta": theta0}                      # the latest accepted iterate
    terms0 = _initial_terms(params, X, cost_kwargs)
    history["cost"].append(terms0["cost"])
    if reporter is not None:
        reporter.report(0, lambda: terms0)

    def on_iteration(theta):
        iteration = len(history["iteration"])
        cost = terms_at(theta)["cost"]
        elapsed = time.perf_counter() - start
        best["theta"] = theta.copy()
        history["iteration"].append(iteration)
        history["cost"].append(cost)
        history["elapsed"].append(elapsed)
        if reporter is not None and reporter.due(iteration):
            reporter.report(iteration, lambda: terms_at(theta))
        if callback is not None:
            if callback(TrainingStep("lbfgs", iteration, None, cost, as_params(theta), elapsed)):
                raise _StopRequested

    try:
        with single_threaded_scipy_blas():
            result = minimize(fun, theta0, method="L-BFGS-B", jac=True, callback=on_iteration,
                              options={"maxiter": max_iter, "maxcor": maxcor})
        theta = result.x
        history["message"] = str(result.message)
        if not np.array_equal(theta, best["theta"]):
            # SciPy returned a point other than the last iterate (rare): record it.
            history["iteration"].append(len(history["iteration"]))
            history["cost"].append(float(result.fun))
            history["elapsed"].append(time.perf_counter() - start)
    except _StopRequested:
        theta = best["theta"]
        history["status"], history["message"] = "stopped", "stopped by the callback"
    except FloatingPointError as exc:
        theta = best["theta"]
        history["status"], history["message"] = "nonfinite", str(exc)
    history["n_evaluations"] = n_evaluations
    trained = as_params(theta)
    if reporter is not None and history["status"] == "done" and reporter.last_print is not None:
        final_iteration = history["iteration"][-1]
        if final_iteration < max_iter:                 # finished early: say so once
            reporter.report(final_iteration, lambda: terms_at(theta),
                            note=f"  ({history['message']})")
    return trained, history


# ---------------------------------------------------------------------------
# Adam
# ---------------------------------------------------------------------------


def adam(params, X, *, lr=1e-3, batch_size=128, epochs=10, beta1=0.9, beta2=0.999,
         eps=1e-8, rng=None, penalty="kl", rho=0.01, beta=3.0, lam=1e-4,
         decoder="sigmoid", callback=None, progress=True, progress_every=2.0):
    """Mini-batch Adam (Kingma and Ba), written out in NumPy.

    Each epoch visits the m rows of X in a new random order (``rng``: a
    Generator or seed; the same seed gives the same run) in batches of
    ``batch_size`` rows (the last one may be smaller). Each step computes
    ``cost_and_grad`` on the batch and updates every parameter p with its
    gradient g:
        mo = beta1 mo + (1 - beta1) g          first moment
        ve = beta2 ve + (1 - beta2) g^2        second moment
        p  = p - lr * (mo / (1 - beta1^t)) / (sqrt(ve / (1 - beta2^t)) + eps)

    On a mini-batch, rho_hat is the mean activation of each hidden unit over
    the rows of that batch, not over all m examples: the KL term and its
    gradient are those of the batch, a noisy (and, KL being nonlinear,
    slightly biased) estimate of the full-batch ones; the smaller the batch
    the noisier. The L1 penalty is a plain mean over examples, so its batch
    estimate is unbiased.

    Other arguments as ``lbfgs``. Returns (params, history); history has
    "epoch" (0 = the start) with "cost" (J on all of X at the end of each
    epoch) and "elapsed", "step_cost" (J on each mini-batch),
    "steps_per_epoch", "status" and "message".
    """
    params = sae.check_params(params)
    cost_kwargs = _cost_kwargs(penalty, rho, beta, lam, decoder)
    lr = check_positive_real("lr", lr)
    eps = check_positive_real("eps", eps)
    beta1 = check_unit_interval("beta1", beta1)
    beta2 = check_unit_interval("beta2", beta2)
    batch_size = validation.check_count("batch_size", batch_size)
    epochs = validation.check_count("epochs", epochs)
    check_callable("callback", callback)
    rng = sae.as_generator(rng)
    X = sae.check_X(X, params, decoder)          # once: checked, in the params' dtype
    m = X.shape[0]
    steps_per_epoch = math.ceil(m / batch_size)
    total_steps = epochs * steps_per_epoch

    params = copy_params(params)
    first_moment = {name: np.zeros_like(p) for name, p in params.items()}
    second_moment = {name: np.zeros_like(p) for name, p in params.items()}
    reporter = make_progress(progress, total_steps, "step", progress_every)
    start = time.perf_counter()
    history = {"optimizer": "adam", "epoch": [0], "cost": [], "elapsed": [0.0],
               "step_cost": [], "steps_per_epoch": steps_per_epoch,
               "status": "done", "message": f"{epochs} epochs"}
    terms0 = _initial_terms(params, X, cost_kwargs)
    history["cost"].append(terms0["cost"])
    if reporter is not None:
        reporter.report(0, lambda: terms0, note="  (all examples)")

    last_finite = params
    t = 0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(m)
        for start_row in range(0, m, batch_size):
            batch = X[order[start_row:start_row + batch_size]]      # (<= batch_size, n_visible)
            with np.errstate(**QUIET):
                # Unchecked: X and the hyperparameters were checked once, and parameters
                # that grow too large must stop the run as "nonfinite", not raise.
                cost, grads = fast.cost_and_grad_unchecked(params, batch, **cost_kwargs)
            if not all_finite(cost, grads):
                history["status"] = "nonfinite"
                history["message"] = (f"the cost or gradient became {cost} at step {t + 1} "
                                      f"(epoch {epoch}); try a smaller learning rate")
                return last_finite, finish_epoch(history, None, start)
            last_finite = params
            history["step_cost"].append(cost)
            t += 1
            with np.errstate(**QUIET):
                params = adam_update(params, grads, first_moment, second_moment,
                                      t, lr, beta1, beta2, eps)
            if not all(np.isfinite(p).all() for p in params.values()):
                history["status"] = "nonfinite"
                history["message"] = (f"the parameters became infinite or NaN at step {t} "
                                      f"(epoch {epoch}); try a smaller learning rate")
                return last_finite, finish_epoch(history, None, start)
            elapsed = time.perf_counter() - start
            if reporter is not None and reporter.due(t):
                reporter.report(t, lambda: fast.cost_terms_unchecked(params, batch, **cost_kwargs),
                                note=f"  (epoch {epoch}, mini-batch)")
            if callback is not None and callback(
                    TrainingStep("adam", t, epoch, cost, params, elapsed)):
                history["status"], history["message"] = "stopped", "stopped by the callback"
                return params, finish_epoch(history, None, start)
        with np.errstate(**QUIET):
            full_cost = fast.cost_terms_unchecked(params, X, **cost_kwargs)["cost"]
        if not math.isfinite(full_cost):
            history["status"] = "nonfinite"
            history["message"] = f"the cost on all examples became {full_cost} after epoch {epoch}"
            return last_finite, finish_epoch(history, None, start)
        finish_epoch(history, full_cost, start)
    return params, history


# ---------------------------------------------------------------------------
# Saving and loading models
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------


class SparseAutoencoder:
    """A thin estimator over ``init_params``, ``lbfgs``/``adam``, ``encode``/``decode``.

        model = SparseAutoencoder(196, rho=0.1, lam=3e-3).fit(X)   # X (m, n_visible)
        A2 = model.encode(X)            # (m, n_hidden)
        X_hat = model.reconstruct(X)    # (m, n_visible)
        model.save("model.npz"); model = SparseAutoencoder.load("model.npz")

    Hyperparameters (defaults: those of ``cost_and_grad``, L-BFGS 400):
    n_hidden; penalty "kl"/"l1"/"none"; rho; beta; lam; decoder
    "sigmoid"/"linear"; optimizer "lbfgs"/"adam"; max_iter (L-BFGS); lr,
    batch_size, epochs (Adam); seed (initialization and Adam's shuffling);
    dtype float64/float32. After ``fit``: ``params_``, ``history_``,
    ``n_visible_``. ``extra_`` holds arrays saved alongside and ``info_`` a
    JSON dict saved alongside (both empty by default).
    """

    def __init__(self, n_hidden, *, penalty="kl", rho=0.01, beta=3.0, lam=1e-4,
                 decoder="sigmoid", optimizer="lbfgs", max_iter=400, lr=1e-3,
                 batch_size=128, epochs=10, seed=0, dtype="float64"):
        self.n_hidden = validation.check_count("n_hidden", n_hidden)
        _cost_kwargs(penalty, rho, beta, lam, decoder)
        self.penalty, self.rho, self.beta, self.lam = penalty, float(rho), float(beta), float(lam)
        self.decoder = decoder
        self.optimizer = validation.check_choice("optimizer", optimizer, OPTIMIZERS)
        self.max_iter = validation.check_count("max_iter", max_iter)
        self.lr = check_positive_real("lr", lr)
        self.batch_size = validation.check_count("batch_size", batch_size)
        self.epochs = validation.check_count("epochs", epochs)
        self.seed = validation.check_seed("seed", seed)
        self.dtype = validation.check_dtype("dtype", dtype).name
        self.params_ = None
        self.history_ = None
        self.n_visible_ = None
        self.extra_ = {}
        self.info_ = {}

    def hyperparameters(self):
        """The constructor's arguments (and n_visible once fitted), JSON-compatible."""
        values = {
            "n_hidden": self.n_hidden, "penalty": self.penalty, "rho": self.rho,
            "beta": self.beta, "lam": self.lam, "decoder": self.decoder,
            "optimizer": self.optimizer, "max_iter": self.max_iter, "lr": self.lr,
            "batch_size": self.batch_size, "epochs": self.epochs, "seed": self.seed,
            "dtype": self.dtype,
        }
        if self.n_visible_ is not None:
            values["n_visible"] = self.n_visible_
        return values

    def cost_kwargs(self):
        return {key: getattr(self, key) for key in COST_KEYS}

    def fit(self, X, *, callback=None, progress=True, progress_every=2.0):
        """Initialize (seeded) and train on X (m, n_visible); returns self."""
        X = as_2d("X", X)
        rng = np.random.default_rng(self.seed)
        params = sae.init_params(X.shape[1], self.n_hidden, rng=rng, dtype=self.dtype)
        common = dict(callback=callback, progress=progress, progress_every=progress_every,
                      **self.cost_kwargs())
        if self.optimizer == "lbfgs":
            params, history = lbfgs(params, X, max_iter=self.max_iter, **common)
        else:
            params, history = adam(params, X, lr=self.lr, batch_size=self.batch_size,
                                   epochs=self.epochs, rng=rng, **common)
        self.params_, self.history_, self.n_visible_ = params, history, X.shape[1]
        return self

    def _fitted_params(self):
        if self.params_ is None:
            raise RuntimeError("this SparseAutoencoder is not fitted yet: call fit(X) or load(path)")
        return self.params_

    def encode(self, X):
        """Hidden activations a2, (m, n_hidden)."""
        return sae.encode(self._fitted_params(), X)

    def reconstruct(self, X):
        """a3 = decode(encode(X)), (m, n_visible)."""
        params = self._fitted_params()
        return sae.decode(params, sae.encode(params, X), decoder=self.decoder)

    def cost_terms(self, X):
        """The parts of J on X (see ``sparse_autoencoder.cost_terms``)."""
        return fast.cost_terms(self._fitted_params(), X, **self.cost_kwargs())

    def save(self, path, extra=None, info=None):
        """Save params, hyperparameters, history and arrays (``save_model``).

        extra: arrays to save besides ``extra_`` (e.g. a whitening matrix);
        info: a JSON-compatible dict (data description, tile shape, ...)
        saved under hyperparameters["info"], read back as ``info_``.
        Refuses, before writing, anything ``load`` would refuse (see saelab/files/model_file.py).
        """
        params = self._fitted_params()
        for name, value in (("extra", extra), ("info", info), ("extra_", self.extra_),
                            ("info_", self.info_)):
            if value is not None and not isinstance(value, dict):
                raise TypeError(f"{name}: expected a dict, got {type(value).__name__}")
        extra = {**(self.extra_ or {}), **(extra or {})}
        hyperparameters = self.hyperparameters()
        settings = {key: value for key, value in hyperparameters.items() if key != "n_visible"}
        type(self)(**settings)           # what load would refuse (attributes changed after fit)
        info = {**(self.info_ or {}), **(info or {})}
        if info:
            hyperparameters["info"] = info
        return save_model(path, params, hyperparameters,
                          history=self.history_, extra=extra)

    @classmethod
    def load(cls, path):
        """A fitted estimator from a file written by ``save``.

        A file of the ReLU + L1 or TopK model (hyperparameter "model") is
        refused with a ValueError that names it: ``loading.load_autoencoder``
        loads a file of any model as its own estimator.
        """
        params, hyperparameters, history, extra = load_model(path)
        name = model_name(hyperparameters)
        if name != NOTES_MODEL:
            raise ValueError(f"model file {path}: holds the {name!r} model, not the notes' "
                             f"sigmoid autoencoder; load it with "
                             f"saelab.training.loading.load_autoencoder(path)")
        return estimator_from_file(cls, path, (params, hyperparameters, history, extra), (
            "penalty", "rho", "beta", "lam", "decoder", "optimizer", "max_iter", "lr",
            "batch_size", "epochs", "seed", "dtype"))


