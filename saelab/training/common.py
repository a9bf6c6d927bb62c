"""What the two estimators' training loops share.

``autoencoder`` (the notes' model: L-BFGS and Adam) and ``modern`` (ReLU +
L1 and TopK: Adam) both use these:

    TrainingStep, Progress, make_progress, format_duration, format_terms
                                the per-step record and the progress lines with ETA
    StopOnInterrupt             Ctrl-C -> stop after the current step
    check_positive_real, check_unit_interval, check_callable, as_2d
                                the optimizers' argument checks
    copy_params, all_finite, QUIET, finish_epoch, adam_update
                                pieces of the Adam loop
    estimator_from_file         an estimator holding a loaded model file's fitted state
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import os
import signal
import sys
import threading
import time

import numpy as np

import sparse_autoencoder as sae
from saelab.checks import validation

# ---------------------------------------------------------------------------
# Progress and per-step callbacks
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class TrainingStep:
    """What ``callback`` receives after each step.

    optimizer: "lbfgs" or "adam"; iteration: L-BFGS iterations or Adam steps
    done so far (1 after the first); epoch: Adam's current epoch (1-based;
    None for L-BFGS); cost: J at ``params`` for L-BFGS, J on the mini-batch
    just used for Adam; params: the current parameters (read them, copy them,
    do not modify them; the optimizers never modify them afterwards either, so
    keeping a reference is safe); elapsed: seconds since the start.
    """

    optimizer: str
    iteration: int
    epoch: int | None
    cost: float
    params: dict
    elapsed: float


def format_duration(seconds):
    """'42s', '3m05s' or '1h02m' for a number of seconds."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_terms(terms):
    """'J 12.34 = recon 10.1 + decay 1.2 + sparsity 1.0, mean rho_hat 0.101'."""
    return (
        f"J {terms['cost']:.5g} = recon {terms['reconstruction']:.4g}"
        f" + decay {terms['weight_decay']:.4g} + sparsity {terms['sparsity']:.4g},"
        f" mean rho_hat {terms['mean_rho_hat']:.4g}"
    )


class Progress:
    """Prints one progress line at most every ``every`` seconds.

    ``due(step)`` says whether a line should be printed now: at the first
    step, at the last one (``step == total``), and whenever the gap since the
    previous line has passed. ``report(step, compute_terms)`` calls
    ``compute_terms()`` (the cost parts: a forward pass for Adam, free for
    L-BFGS, which keeps those of its latest evaluation) and prints the line.
    The gap is ``every`` seconds, or 20 times the time ``compute_terms``
    took if that is longer, so reporting never costs more than about 5% of
    the run.
    """

    OVERHEAD_FACTOR = 20

    def __init__(self, total, unit, *, every=2.0, stream=None, clock=time.perf_counter):
        self.total, self.unit, self.every = total, unit, every
        self.stream = stream if stream is not None else sys.stdout
        self.clock = clock
        self.start = clock()
        self.last_print = None
        self.gap = every
        self.format_terms = format_terms      # the middle of the line (saelab/training/modern.py sets its own)

    def elapsed(self):
        return self.clock() - self.start

    def due(self, step):
        if self.last_print is None or step >= self.total:
            return True
        return self.clock() - self.last_print >= self.gap

    def report(self, step, compute_terms, note=""):
        before = self.clock()
        with np.errstate(**QUIET):                  # a diverging run is reported, not warned about
            terms = compute_terms()
        self.gap = max(self.every, self.OVERHEAD_FACTOR * (self.clock() - before))
        elapsed = self.elapsed()
        eta = elapsed / step * (self.total - step) if step > 0 else float("nan")
        eta_text = format_duration(eta) if math.isfinite(eta) else "?"
        width = len(str(self.total))
        print(
            f"{self.unit} {step:>{width}}/{self.total}  {self.format_terms(terms)}{note}"
            f"  [{format_duration(elapsed)} elapsed, ~{eta_text} left]",
            file=self.stream, flush=True,
        )
        self.last_print = self.clock()


def make_progress(progress, total, unit, every):
    if isinstance(every, bool) or not isinstance(every, numbers.Real) or not every >= 0:
        raise ValueError(f"progress_every: expected a number of seconds >= 0, got {every!r}")
    if progress is False or progress is None:
        return None
    if progress is not True and not callable(getattr(progress, "write", None)):
        raise TypeError(f"progress: expected True, False, None or a file object with a write "
                        f"method, got {progress!r}")
    stream = None if progress is True else progress
    return Progress(total, unit, every=float(every), stream=stream)


# ---------------------------------------------------------------------------
# Ctrl-C: stop after the current step
# ---------------------------------------------------------------------------


class StopOnInterrupt:
    """Turns the first Ctrl-C (SIGINT) into "stop after the current step".

        with StopOnInterrupt() as interrupt:
            params, history = lbfgs(params, X, callback=interrupt.chain(callback))
        if interrupt.requested:
            ...                                  # save what was reached, exit 130

    Inside the block, the first SIGINT only sets ``requested`` and writes a
    one-line notice to ``stream`` (default stderr); the callback returned by
    ``chain`` then returns True, so the optimizer stops after the step in
    progress and returns the parameters reached (``history["status"] ==
    "stopped"``). A second SIGINT raises KeyboardInterrupt as usual: quit
    now. The previous handler is restored when the block ends. Signal
    handlers exist only in the main thread; elsewhere this does nothing.
    """

    NOTICE = ("Ctrl-C: stopping after the current step; the parameters reached so far "
              "will be saved (press Ctrl-C again to quit at once without saving)")

    def __init__(self, stream=None, notice=NOTICE):
        self.stream = stream
        self.notice = notice
        self.requested = False
        self.active = False
        self._previous = None

    def __enter__(self):
        self.requested = False
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self.active = True
        return self

    def __exit__(self, *exc_info):
        if self.active:
            previous = self._previous if self._previous is not None else signal.default_int_handler
            signal.signal(signal.SIGINT, previous)
            self.active = False
        return False

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self._write("\n" + self.notice + "\n")

    def _write(self, text):
        stream = self.stream if self.stream is not None else sys.stderr
        try:                           # unbuffered: safe even if the handler interrupts a print
            os.write(stream.fileno(), text.encode())
        except (AttributeError, OSError, ValueError):
            stream.write(text)
            stream.flush()

    def chain(self, callback=None):
        """A training callback: calls ``callback(step)`` (if given), then says whether to stop."""
        check_callable("callback", callback)

        def stop_requested(step):
            stop = bool(callback(step)) if callback is not None else False
            return stop or self.requested

        return stop_requested



# ---------------------------------------------------------------------------
# Argument checks and pieces of the Adam loop
# ---------------------------------------------------------------------------


def check_positive_real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise TypeError(f"{name}: expected a finite real number, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {value!r}")
    return float(value)


def check_unit_interval(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number in [0, 1), got {value!r}")
    if not 0 <= value < 1:
        raise ValueError(f"{name}: expected a number in [0, 1), got {value!r}")
    return float(value)


def check_callable(name, value):
    if value is not None and not callable(value):
        raise TypeError(f"{name}: expected a callable or None, got {type(value).__name__}")
    return value


def as_2d(name, X):
    """X as an array, raising a clear error unless it is 2-D (rows are examples)."""
    X = validation.plain_array(name, X)      # a masked array with values masked is refused
    try:
        X = np.asarray(X)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{name}: expected a 2-D array of numbers, got {type(X).__name__}") from exc
    if X.ndim != 2 or X.shape[1] < 1:
        raise ValueError(f"{name}: expected a 2-D array (m, n_visible) with n_visible >= 1, "
                         f"got shape {X.shape}")
    return X


def copy_params(params):
    return {name: np.array(params[name], copy=True) for name in sae.PARAM_NAMES}


def all_finite(cost, grads):
    return math.isfinite(cost) and all(np.isfinite(grads[name]).all() for name in sae.PARAM_NAMES)


# While training, overflow and invalid operations are not warned about: an
# optimizer that diverges makes the cost, the gradient or the parameters
# non-finite, and the optimizers test for exactly that after every step and
# stop with a clear message (history["status"] == "nonfinite"). Inside the
# model's domain nothing overflows anyway (tests/test_reliability.py).
QUIET = dict(over="ignore", invalid="ignore", divide="ignore")



def finish_epoch(history, full_cost, start):
    if full_cost is not None:
        history["epoch"].append(len(history["epoch"]))
        history["cost"].append(full_cost)
        history["elapsed"].append(time.perf_counter() - start)
    return history


def adam_update(params, grads, first_moment, second_moment, t, lr, beta1, beta2, eps):
    """One Adam step; returns new parameter arrays (the old ones stay intact)."""
    correction1 = 1 - beta1 ** t
    correction2 = 1 - beta2 ** t
    updated = {}
    for name in sae.PARAM_NAMES:
        g = grads[name]
        mo, ve = first_moment[name], second_moment[name]
        mo *= beta1
        mo += (1 - beta1) * g
        ve *= beta2
        ve += (1 - beta2) * g * g
        denominator = np.sqrt(ve / correction2)
        denominator += eps
        updated[name] = params[name] - (lr / correction1) * mo / denominator
    return updated


def estimator_from_file(cls, path, loaded, keys):
    """An estimator ``cls(n_hidden, **hyperparameters)`` holding a loaded model file's fitted state.

    loaded: what ``load_model(path)`` returned (params, hyperparameters,
    history, extra); keys: the hyperparameters that ``cls`` takes. Bad or
    contradicting hyperparameters raise ValueError naming the file.
    """
    params, hyperparameters, history, extra = loaded
    known = {key: hyperparameters[key] for key in keys if key in hyperparameters}
    try:
        model = cls(hyperparameters.get("n_hidden", params["W1"].shape[0]), **known)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"model file {path}: bad hyperparameters ({exc})") from exc
    if np.dtype(model.dtype) != params["W1"].dtype:
        raise ValueError(f"model file {path}: hyperparameters say dtype {model.dtype}, "
                         f"params are {params['W1'].dtype}")
    model.params_, model.history_ = params, history
    model.n_visible_ = params["W1"].shape[1]
    model.extra_ = extra
    model.info_ = hyperparameters.get("info") or {}
    return model
