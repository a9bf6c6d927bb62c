"""Numerical gradient checking, as in the notes and UFLDL's exercise.

Library:
    numerical_gradient(f, theta, eps=1e-4)   central differences, one coordinate at a time
    relative_difference(a, b)                ||a - b|| / ||a + b||, the exercise's measure
    check_gradient(objective, theta, unpack, eps)   one check: J, errors per parameter block
    AUTOENCODER_STAGES, Stage                UFLDL's staged check of a cost_and_grad (and its J)
    compare_with_notes, classic_slip         J against the notes' J, and the slip that explains it
    MODERN_STAGES, ModernStage               modern_sae.py's ReLU + L1, TopK, TopK + AuxK, at the kinks
    STACKED_STAGES, StackedStage             stacked_autoencoder.py's fine-tuning cost
    STAGES                                   those, SoftmaxStage (saelab/softmax.py), MODERN_STAGES,
                                             STACKED_STAGES
    SECTIONS                                 the command's sections by name (notes, fast, softmax,
                                             modern, stacked)
    make_modern_problem, kink_margins        their net, away from every kink, and its margins
    run_stages(cost_fn, ...)                 run a list of stages; an error is one StageError
    failing_stages, format_table, format_settings, format_verdict   the printed report
    load_cost_function("FILE.py:NAME")       the function that --cost names

Command:
    python gradcheck.py [--section NAME]... [--all] [--cost FILE.py:FUNCTION] [--show N]
                        [--visible 8] [--hidden 5] [--examples 10] [--seed 0] [--eps 1e-4]

It first checks the checker on h(x) = x1^2 + 3 x1 x2 at (4, 10). Then it
checks, stage by stage (reconstruction only, + weight decay, + KL sparsity,
L1 sparsity, linear decoder, everything together), the notes' model as the
readable ``sparse_autoencoder.cost_and_grad`` computes it, and ends with one
verdict line: 24 lines, the student's first check.

More sections, by name (``--section``) or all of them (``--all``, what the
tests and CI run): ``fast`` (the tuned ``fast.cost_and_grad``, the same
stages), ``softmax`` (saelab/softmax.py's classifier), ``modern``
(modern_sae.py's ReLU + L1 and TopK, with and without AuxK, on a net of
their own chosen away from the kinks of ReLU and TopK, with the selections
frozen and checked unchanged: ``ModernStage``) and ``stacked``
(stacked_autoencoder.py's fine-tuning cost, two and three encoders).

``--cost`` checks a function of yours with cost_and_grad's signature instead
(``exercise.py:cost_and_grad``, the exercise's skeleton, for one). A
gradient check proves that a gradient matches its cost, not that the cost
is the notes' J; so each stage also compares your J with the notes' J
(``sparse_autoencoder.cost_terms`` at the same point) and fails when they
differ, printing both, their ratio and, when it explains the difference
exactly, the classic slip: all of J or one of its terms multiplied by m,
1/m, 2 or 1/2, or a term left out (``compare_with_notes``).

One row per stage; a function that raises or returns something that is not
(cost, grads) gets one line per stage saying so. Exit status 0 when every
relative difference is below TOLERANCE (1e-9, the exercise's bar) and every
J is right, 1 otherwise, 2 for bad options.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import inspect
import math
import numbers
import os
import re
import sys
import textwrap
import traceback
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from saelab.checks.argtypes import nonnegative_int, positive_float, positive_int
import fast
import modern_sae
import sparse_autoencoder as sae
import stacked_autoencoder as stacked

TOLERANCE = 1e-9          # UFLDL: a correct autoencoder gradient gives diff < 1e-9
EPS = 1e-4                # the notes' step
NEAR_FACTOR = 10          # a failure below NEAR_FACTOR * TOLERANCE may be truncation error
LINE_WIDTH = 100          # every line the command prints fits in this many columns


def numerical_gradient(f, theta, eps=1e-4):
    """Central-difference gradient of a scalar function f at theta.

    g_i = (f(theta + eps e_i) - f(theta - eps e_i)) / (2 eps), for each i.

    f: maps a 1-D float array to a finite scalar. theta: 1-D float array,
    never modified: f is given a working copy, perturbed one coordinate at a
    time and restored exactly after each. Returns an array with theta's
    shape and dtype.

    Raises ValueError naming the coordinate when f returns something that
    is not a finite number (a NaN would otherwise turn into a NaN gradient,
    silently), or when f changes the array it is given (then the points
    after it would not be theta +- eps e_i).
    """
    if not isinstance(theta, np.ndarray) or theta.ndim != 1 or theta.dtype.kind != "f":
        raise ValueError(
            f"theta: expected a 1-D float numpy array, got "
            f"{getattr(theta, 'shape', type(theta).__name__)} of dtype {getattr(theta, 'dtype', None)}"
        )
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps: expected a positive finite step, got {eps!r}")
    if not callable(f):
        raise TypeError(f"f: expected a function of theta, got {type(f).__name__}")
    work = theta.copy()                          # f sees this copy; theta stays as it was
    grad = np.empty_like(theta)
    for i in range(theta.size):
        original = theta[i]
        work[i] = original + eps
        f_plus = _finite_value(f(work), i, "+")
        _check_unchanged(work, theta, i, original + eps)
        work[i] = original - eps
        f_minus = _finite_value(f(work), i, "-")
        _check_unchanged(work, theta, i, original - eps)
        work[i] = original
        grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def _finite_value(value, i, sign):
    """f's value as a float, or a ValueError naming the point it was computed at."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"f: returned {type(value).__name__} at theta {sign} eps e_{i}, "
                         f"expected a number") from None
    if not np.isfinite(number):
        raise ValueError(f"f: returned {number} at theta {sign} eps e_{i}, expected a finite "
                         f"number")
    return number


def _check_unchanged(work, theta, i, moved):
    """A ValueError if f changed the copy it was given (anything but coordinate i at ``moved``)."""
    expected_i = work.dtype.type(moved)
    if work[i] != expected_i or not (np.array_equal(work[:i], theta[:i])
                                     and np.array_equal(work[i + 1:], theta[i + 1:])):
        raise ValueError(f"f: changed the array it was given, in place (at the point theta +- "
                         f"eps e_{i}); it must not modify its argument")


def relative_difference(a, b):
    """||a - b|| / ||a + b|| (Euclidean norms of the flattened arrays).

    0 when a == b; the exercise expects below 1e-9 for a correct gradient.
    Returns 0.0 when both are zero.
    """
    a = np.ravel(np.asarray(a, dtype=np.float64))
    b = np.ravel(np.asarray(b, dtype=np.float64))
    if a.shape != b.shape:
        raise ValueError(f"a, b: expected arrays of one size, got {a.size} and {b.size}")
    denominator = np.linalg.norm(a + b)
    if denominator == 0:
        return 0.0 if not np.any(a - b) else float("inf")
    return float(np.linalg.norm(a - b) / denominator)


# ---------------------------------------------------------------------------
# One check: a cost function with gradient, numbers per parameter block
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class GradientCheck:
    """Result of one check.

    relative_difference: ||num - grad|| / ||num + grad|| over all parameters.
    max_abs_error: block name -> max |numerical - analytic| in that block.
    cost: J at the checked parameters. numerical, analytic: block name ->
    array of that block's shape (for ``--show``; None when not kept).
    notes: lines the command prints under its section's table (the kink margins).
    cost_error: empty when J is the notes' J at the stage (or not compared);
    else one line saying how it differs (``compare_with_notes``): the stage fails.
    """

    relative_difference: float
    max_abs_error: dict
    cost: float = float("nan")
    numerical: dict | None = None
    analytic: dict | None = None
    notes: tuple = ()
    cost_error: str = ""


class BadReturnValue(ValueError):
    """The checked function returned something other than (cost, grads) of the
    parameters' keys and shapes, with finite values."""


def check_gradient(objective, theta, unpack, eps=EPS) -> GradientCheck:
    """Compare objective's gradient with central differences at theta.

    objective: params dict -> (cost, grads dict with the same keys and shapes).
    theta: the packed parameters (1-D float array); unpack(theta) -> params dict
    (for the autoencoder, ``sae.unpack`` with the sizes bound). theta is
    perturbed in place during the check and restored exactly.

    The returned value is checked first (a tuple (cost, grads), cost a finite
    number, grads a dict with the keys and shapes of unpack(theta), finite):
    anything else raises BadReturnValue, a ValueError naming what was wrong.
    """
    params = unpack(theta)
    cost, analytic = _checked_return(objective(params), params)
    analytic = {name: np.array(block, dtype=np.float64) for name, block in analytic.items()}

    def cost_only(t):
        returned = objective(unpack(t))
        if not isinstance(returned, tuple) or len(returned) != 2:
            what = ("None (a missing return?)" if returned is None else
                    f"a tuple of {len(returned)}" if isinstance(returned, tuple) else
                    type(returned).__name__)
            raise BadReturnValue(f"returned {what} at a perturbed theta, expected a tuple "
                                 f"(cost, grads)")
        value = returned[0]
        if not _is_finite_number(value):
            raise BadReturnValue(f"returned cost {value!r} at a perturbed theta, "
                                 f"expected a finite number")
        return value

    numerical = unpack(numerical_gradient(cost_only, theta, eps))
    names = list(params)
    flat = lambda blocks: np.concatenate([np.ravel(blocks[n]) for n in names])  # noqa: E731
    return GradientCheck(
        relative_difference=relative_difference(flat(numerical), flat(analytic)),
        max_abs_error={
            n: float(np.max(np.abs(numerical[n] - analytic[n]), initial=0.0)) for n in names
        },
        cost=float(cost),
        numerical={n: np.array(numerical[n]) for n in names},
        analytic=analytic,
    )


def _checked_return(returned, params):
    """(cost, grads) from the checked function's return value, or BadReturnValue."""
    if not isinstance(returned, tuple) or len(returned) != 2:
        what = ("None (a missing return?)" if returned is None else
                f"a tuple of {len(returned)}" if isinstance(returned, tuple) else
                type(returned).__name__)
        raise BadReturnValue(f"returned {what}, expected a tuple (cost, grads)")
    cost, grads = returned
    if not _is_finite_number(cost):
        got = repr(cost) if isinstance(cost, numbers.Real) else f"of type {type(cost).__name__}"
        raise BadReturnValue(f"returned cost {got}, expected a finite number")
    if not isinstance(grads, dict):
        raise BadReturnValue(f"returned grads of type {type(grads).__name__}, "
                             f"expected a dict with keys {', '.join(params)}")
    if set(grads) != set(params):
        raise BadReturnValue(f"returned grads with keys {', '.join(map(str, grads))}, "
                             f"expected {', '.join(params)}")
    for name, param in params.items():
        block = np.asarray(grads[name])
        if block.shape != np.shape(param):
            raise BadReturnValue(f"returned grads['{name}'] of shape {block.shape}, "
                                 f"not {name}'s shape {np.shape(param)}")
        if block.dtype.kind not in "fiu":
            raise BadReturnValue(f"returned grads['{name}'] of dtype {block.dtype}, "
                                 f"expected real numbers")
        if not np.all(np.isfinite(block)):
            raise BadReturnValue(f"returned grads['{name}'] with NaN or infinite values")
    return cost, grads


def _is_finite_number(value):
    """True for a finite real number (Python or NumPy scalar, or a 0-d array)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and bool(np.isfinite(float(value))))


def check_the_checker(eps=EPS):
    """The exercise's test of the checker: h(x) = x1^2 + 3 x1 x2 at x = (4, 10).

    The exact gradient is (2 x1 + 3 x2, 3 x1) = (38, 12). Returns
    (numerical gradient, relative difference); UFLDL's value for eps = 1e-4
    is about 2.1452e-12.
    """
    h = lambda x: x[0] ** 2 + 3 * x[0] * x[1]  # noqa: E731
    x = np.array([4.0, 10.0])
    exact = np.array([2 * x[0] + 3 * x[1], 3 * x[0]])
    numerical = numerical_gradient(h, x, eps)
    return numerical, relative_difference(numerical, exact)


# ---------------------------------------------------------------------------
# UFLDL's stages for the autoencoder
# ---------------------------------------------------------------------------

# Penalties strong enough to matter on the small net below: weight decay
# changes the sigmoid net's gradient by about half, the sparsity terms
# dominate it (rho_hat is near 0.5, far from rho).
RHO, BETA, LAM = 0.1, 3.0, 0.03


@dataclass(frozen=True)
class Stage:
    """One row of the check: cost_fn(params, X, **settings) at the given settings.

    A stage is any object with ``name``, ``settings`` (a dict shown in the
    listing of the stages) and ``check(cost_fn, params, X, eps) -> GradientCheck``;
    a stage for another model can ignore cost_fn, params and X and check its
    own cost. The command runs the ``Stage`` instances on each autoencoder
    function it checks, and gives any other stage a section of its own.
    """

    name: str
    settings: dict = field(default_factory=dict)

    def check(self, cost_fn, params, X, eps=EPS) -> GradientCheck:
        """The gradient against central differences, and J against the notes' J.

        cost_fn gets copies of the parameters and of X at every call, so a
        function that changes its inputs in place neither corrupts the check
        nor the stages after it; what it changed is named in ``notes``.
        """
        n_hidden, n_visible = params["W1"].shape
        modified = {}                                   # argument name -> True, in order

        def objective(p):
            return call_with_copies(cost_fn, p, X, self.settings, modified)

        result = check_gradient(objective, sae.pack(params),
                                lambda theta: sae.unpack(theta, n_visible, n_hidden), eps)
        notes_terms = sae.cost_terms(params, X, **self.settings)
        notes = ((_fit(f"  note: {_qualified_name(cost_fn)} changed {', '.join(modified)} in "
                       f"place; the checker gave it copies, so the rows above are right, but "
                       f"a cost function must not modify its arguments"),)
                 if modified else ())
        return dataclasses.replace(result, notes=notes, cost_error=compare_with_notes(
            result.cost, notes_terms, X.shape[0]))


def call_with_copies(cost_fn, params, X, settings, modified):
    """cost_fn(copy of params, copy of X, **settings); the names of the arguments it
    changed are added to the dict ``modified`` ("params['W1']", "X")."""
    given = {name: np.array(value, copy=True) for name, value in params.items()}
    X_given = np.array(X, copy=True)
    returned = cost_fn(given, X_given, **settings)
    for name, value in params.items():
        if not np.array_equal(given.get(name), value):
            modified[f"params['{name}']"] = True
    if set(given) != set(params):
        modified["params (keys)"] = True
    if not np.array_equal(X_given, X):
        modified["X"] = True
    return returned


# ---------------------------------------------------------------------------
# J itself: a gradient check proves that the gradient matches the cost, not
# that the cost is the notes' J. So every stage also compares J with the
# notes' J (sparse_autoencoder.cost_terms at the same point and settings).
# ---------------------------------------------------------------------------

COST_RTOL = 1e-9          # J agrees with the notes' J to 9 significant digits
TERM_LABELS = {"reconstruction": "reconstruction", "weight_decay": "weight-decay",
               "sparsity": "sparsity"}


def compare_with_notes(cost, notes_terms, m) -> str:
    """"" when cost is the notes' J, else one line: both values, their ratio and the slip.

    notes_terms: ``sae.cost_terms`` at the same point and settings (the
    notes' J is ``notes_terms["cost"]``, its parts ``reconstruction``,
    ``weight_decay``, ``sparsity``). m: the number of examples. The classic
    slips are named when they explain the difference exactly: all of J, or
    one of its terms, multiplied by m, 1/m, 2 or 1/2, or a term left out.
    """
    notes_cost = notes_terms["cost"]
    if math.isclose(cost, notes_cost, rel_tol=COST_RTOL, abs_tol=1e-300):
        return ""
    ratio = f"{cost / notes_cost:.6g}" if notes_cost else "inf"
    slip = classic_slip(cost, notes_terms, m)
    if slip and slip[0] is not None:
        ratio += f" = {slip[0]}"
    line = f"{cost:.8g} where the notes' J is {notes_cost:.8g} (ratio {ratio})"
    return f"{line}: {slip[1]}" if slip else line


def classic_slip(cost, notes_terms, m):
    """(the ratio's name or None, the slip in words) that turns the notes' J into cost, or None.

    The ratio is named when all of J is off by the factor ("m = 10");
    otherwise the words name the term that is.
    """
    factors = [(m, f"m = {m}", "1/m missing: a sum where the notes take the mean?"),
               (1 / m, f"1/m = 1/{m}", "divided by m once too often?"),
               (2, "2", "the 1/2 missing?"),
               (0.5, "1/2", "an extra 1/2?")]
    same = lambda a, b: math.isclose(a, b, rel_tol=1e-7, abs_tol=1e-300)  # noqa: E731
    notes_cost = notes_terms["cost"]
    for factor, name, why in factors:
        if same(cost, factor * notes_cost):
            named = name.split(" = ")[0] if "m" in name else None      # "10 = m", not "2 = 2"
            return named, f"all of J is {name} times the notes' J ({why})"
    means = notes_terms["reconstruction"] + notes_terms["sparsity"]
    if notes_terms["sparsity"] != 0 and same(cost, notes_cost + (m - 1) * means):
        return None, (f"the reconstruction and sparsity terms are both m = {m} times the notes' "
                      f"(every mean over the examples a sum: 1/m missing?)")
    for part, label in TERM_LABELS.items():
        term = notes_terms[part]
        if term == 0:
            continue
        if same(cost, notes_cost - term):
            return None, f"the {label} term is left out"
        for factor, name, why in factors:
            if same(cost, notes_cost + (factor - 1) * term):
                return None, f"the {label} term is {name} times the notes' ({why})"
    return None


def passes(check, tol=TOLERANCE):
    """True when the relative difference is below tol and J is the notes' J."""
    return check.relative_difference < tol and not getattr(check, "cost_error", "")


@dataclass(frozen=True)
class SoftmaxStage:
    """Softmax regression (saelab/softmax.py) on its own small random problem.

    The problem is ``softmax.softmax_gradcheck_stage(seed, **settings)``:
    X (m, n_features) uniform on [0, 1], random labels, W and b standard
    normal. The autoencoder's cost_fn, params and X are not used.
    """

    name: str = "softmax regression"
    settings: dict = field(default_factory=lambda: dict(lam=1e-4, m=20, n_features=8, n_classes=4))
    seed: int = 0
    title: str = "softmax.softmax_cost_and_grad (the classifier of self_taught.py)"

    def check(self, cost_fn, params, X, eps=EPS) -> GradientCheck:
        from saelab import softmax

        f, theta, analytic = softmax.softmax_gradcheck_stage(self.seed, **self.settings)
        cost = f(theta)
        numerical = numerical_gradient(f, theta, eps)
        blocks = lambda t: softmax.unpack_softmax(  # noqa: E731
            t, self.settings["n_features"], self.settings["n_classes"])
        num, ana = blocks(numerical), blocks(analytic)
        return GradientCheck(
            relative_difference=relative_difference(numerical, analytic),
            max_abs_error={n: float(np.max(np.abs(num[n] - ana[n]))) for n in num},
            cost=float(cost),
            numerical=num,
            analytic=ana,
        )


AUTOENCODER_STAGES = [
    Stage("reconstruction only", dict(decoder="sigmoid", penalty="none", lam=0.0)),
    Stage("+ weight decay", dict(decoder="sigmoid", penalty="none", lam=LAM)),
    Stage("+ KL sparsity", dict(decoder="sigmoid", penalty="kl", rho=RHO, beta=BETA, lam=LAM)),
    Stage("L1 sparsity", dict(decoder="sigmoid", penalty="l1", beta=BETA, lam=LAM)),
    Stage("linear decoder", dict(decoder="linear", penalty="none", lam=0.0)),
    Stage("everything together", dict(decoder="linear", penalty="kl", rho=RHO, beta=BETA, lam=LAM)),
]


def make_problem(n_visible=8, n_hidden=5, n_examples=10, seed=0):
    """The small net every stage is checked on: (params, X), float64.

    Weights from ``init_params`` (small: rho_hat stays away from 0 and 1);
    biases uniform on [-0.1, 0.1] so that they are not checked only at zero;
    X = u**3 with u uniform on [0, 1]: in [0, 1], valid for both decoders, and
    mostly dark like MNIST. Small inputs keep the central difference's own
    error (eps^2 times third derivatives, about 1e-10 of the gradient at
    eps = 1e-4) under the 1e-9 bar for every seed tried (at most 5.6e-10 over
    200 seeds); with X uniform on [0, 1], 5 seeds in 60 crossed it. Shapes: X (n_examples, n_visible).
    """
    rng = np.random.default_rng(seed)
    params = sae.init_params(n_visible, n_hidden, rng)
    params["b1"][:] = rng.uniform(-0.1, 0.1, n_hidden)
    params["b2"][:] = rng.uniform(-0.1, 0.1, n_visible)
    X = rng.uniform(0.0, 1.0, size=(n_examples, n_visible)) ** 3
    return params, X


# ---------------------------------------------------------------------------
# Today's models (modern_sae.py): ReLU + L1, TopK, TopK + AuxK, honest at the kinks
# ---------------------------------------------------------------------------

# ReLU has a kink at z2 = 0, TopK one wherever the k-th and (k+1)-th z2 of a
# row swap. A central difference across a kink measures neither side's
# derivative. So these stages run where no kink is within reach: on a net
# whose margins (the smallest |z2| of the units in use, the smallest gap
# between the k-th and (k+1)-th z2 of a row) are at least MARGIN_FACTOR
# times the most one step of eps can move any z2. In addition the TopK
# selections are frozen from the unperturbed pass (``mask``, ``aux_mask``), and
# every perturbed pass asserts that the selection it would have made itself,
# and the sign pattern of z2, are the unperturbed ones.
MARGIN_FACTOR = 100
MODERN_STEP_FACTOR = 0.1     # their step is eps / 10: see ModernStage
MODERN_TITLE = "modern_sae.py: ReLU + L1 and TopK (docs/modern_sae.md)"


def make_modern_problem(n_visible=8, n_hidden=8, n_examples=10, seed=0, *, k=3, aux_k=2,
                        dead=(4, 5, 6, 7), eps=EPS):
    """The net of the modern stages: (params, X, seed used), float64, away from every kink.

    W2 has random unit-norm columns (TopK's decoder); W1 = W2.T plus noise
    of scale 0.3 (untied, so that a transposition error shows); b1, b2
    uniform on [-0.2, 0.2]; X standard normal (n_examples, n_visible), like
    centered activations. The seed used is the first from ``seed`` on whose
    margins (``kink_margins``) all reach MARGIN_FACTOR times the largest
    move of z2 under one step of eps.
    """
    for candidate in range(seed, seed + 1000):
        rng = np.random.default_rng(candidate)
        W2 = modern_sae.normalize_decoder(rng.standard_normal((n_visible, n_hidden)))
        params = {
            "W1": W2.T + 0.3 * rng.standard_normal((n_hidden, n_visible)),
            "b1": rng.uniform(-0.2, 0.2, n_hidden),
            "W2": W2,
            "b2": rng.uniform(-0.2, 0.2, n_visible),
        }
        X = rng.standard_normal((n_examples, n_visible))
        margins = kink_margins(params, X, k=k, aux_k=aux_k, dead=_dead_flags(dead, n_hidden),
                               eps=eps)
        if min(margins[name] for name in margins if name != "move") >= MARGIN_FACTOR * margins["move"]:
            return params, X, candidate
    raise ValueError(f"no seed in [{seed}, {seed + 1000}) keeps every kink "
                     f"{MARGIN_FACTOR} steps away; use a smaller eps")


def kink_margins(params, X, *, k, aux_k, dead, eps=EPS) -> dict:
    """How far the net is from the kinks, and how far one step of eps can move z2.

    move:     the largest change of any z2 when one parameter moves by eps, for both
              encoders: eps * max(|X - b2|, |X|, |W1|, 1). TopK's z2 = (X - b2) @ W1.T + b1:
              W1[j, l] moves z2[:, j] by eps x_bar[:, l]; b2[l] by -eps W1[j, l]; b1[j] by
              eps; W2 not at all. ReLU + L1's z2 = X @ W1.T + b1: W1[j, l] by eps X[:, l].
    relu:     the smallest |z2| of ReLU + L1's encoder over all units (it uses them all).
    topk_all: the smallest |z2| of TopK's encoder over all units (the checks watch every sign).
    topk_relu, topk_gap: the smallest |z2| (TopK's encoder) among the k selected units of
              each row; the smallest gap between the k-th and (k+1)-th largest z2 of a row
              (none if k = n_hidden).
    aux_relu, aux_gap: the same for AuxK's aux_k among the dead latents.
    """
    z2 = modern_sae.preactivations(params, X)                 # (m, n_hidden): TopK's
    x_bar = X - params["b2"]
    margins = {"move": eps * max(np.abs(x_bar).max(), np.abs(X).max(), np.abs(params["W1"]).max(),
                                 1.0),
               "relu": np.abs(modern_sae.relu_preactivations(params, X)).min(),
               "topk_all": np.abs(z2).min()}
    for name, values, count in (("topk", z2, k), ("aux", z2[:, dead], aux_k)):
        descending = -np.sort(-values, axis=1)
        chosen = descending[:, :count]
        margins[f"{name}_relu"] = np.abs(chosen).min()
        if count < values.shape[1]:
            margins[f"{name}_gap"] = (descending[:, count - 1] - descending[:, count]).min()
    return {name: float(value) for name, value in margins.items()}


def _dead_flags(dead, n_hidden):
    flags = np.zeros(n_hidden, dtype=bool)
    flags[list(dead)] = True
    return flags


class KinkCrossed(ValueError):
    """A perturbed pass changed the selection or the ReLU pattern: the check is not honest."""


@dataclass(frozen=True)
class ModernStage:
    """One stage of modern_sae.py's section, on ``make_modern_problem(seed)``.

    model "relu_l1": J = relu_l1_cost_and_grad (no pre-encoder bias: z2 = X W1^T + b1), every
    block raw.
    model "topk": theta -> J with W2 replaced by normalize_decoder(W2), the
    selections (and AuxK's e) frozen from the unperturbed pass; its W2 block
    is ``project_decoder_grad(W2, grads["W2"])``, the derivative of that
    function at the unit-norm W2 of the problem. Both assert that no perturbed
    pass changes the TopK selections or the sign of any z2 (KinkCrossed), and
    report the margins in ``notes``. The autoencoder's cost_fn, params and X
    are not used.
    """

    name: str
    model: str
    settings: dict = field(default_factory=dict)
    seed: int = 0
    title: str = MODERN_TITLE
    step_factor: float = MODERN_STEP_FACTOR

    def check(self, cost_fn, params, X, eps=EPS) -> GradientCheck:
        eps = eps * self.step_factor
        settings = dict(self.settings)
        dead_latents = settings.pop("dead", (4, 5, 6, 7))
        k, aux_k = settings.get("k", 3), settings.get("aux_k")
        params, X, seed = make_modern_problem(seed=self.seed, k=k, aux_k=aux_k or 2,
                                              dead=dead_latents, eps=eps)
        n_hidden, n_visible = params["W1"].shape
        dead = _dead_flags(dead_latents, n_hidden)
        encoder = modern_sae.relu_preactivations if self.model == "relu_l1" else modern_sae.preactivations
        z2 = encoder(params, X)
        frozen = {"positive": z2 > 0, "encoder": encoder}
        if self.model == "topk":
            frozen["mask"] = modern_sae.topk_mask(z2, k)
            if aux_k is not None:
                frozen["aux_mask"] = modern_sae.auxk_mask(z2, dead, aux_k)
                settings.update(dead=dead, aux_mask=frozen["aux_mask"],
                                aux_target=X - modern_sae.decode_linear(
                                    params, frozen["mask"] * np.maximum(z2, 0)))
            settings["mask"] = frozen["mask"]
            if not np.allclose(modern_sae.column_norms(params["W2"]), 1, rtol=0, atol=1e-12):
                raise ValueError("the TopK stages need unit-norm decoder columns")
        passes = {"total": 0, "changed": 0}

        def objective(p):
            passes["total"] += 1
            if _kinks_crossed(p, X, frozen, k, aux_k, dead):
                passes["changed"] += 1
            if self.model == "relu_l1":
                return modern_sae.relu_l1_cost_and_grad(p, X, **settings)
            unit = dict(p, W2=modern_sae.normalize_decoder(p["W2"]))
            cost, grads = modern_sae.topk_cost_and_grad(unit, X, **settings)
            return cost, dict(grads, W2=modern_sae.project_decoder_grad(p["W2"], grads["W2"]))

        result = check_gradient(objective, sae.pack(params),
                                lambda theta: sae.unpack(theta, n_visible, n_hidden), eps)
        if passes["changed"]:
            raise KinkCrossed(f"{passes['changed']} of {passes['total']} passes changed the "
                              f"selection or the sign of a z2: a kink within one step")
        margins = kink_margins(params, X, k=k, aux_k=aux_k or 2, dead=dead, eps=eps)
        chosen = f"seed {seed}" + (f", the first from {self.seed} this far from every kink"
                                   if seed != self.seed else "")
        paragraph = (
            f"the net: {n_visible} visible, {n_hidden} hidden, {X.shape[0]} examples ({chosen}), "
            f"float64, X standard normal, W2's columns of unit norm. Step eps * "
            f"{self.step_factor:g} = {eps:g} (w / ||w|| is curved: at the notes' 1e-4 its "
            f"truncation error alone reaches 2e-9). TopK's W2: the projected gradient against "
            f"J(normalize(W2)). Kinks: the sign of every z2 and the TopK selections (frozen from "
            f"the unperturbed pass) stayed put in all {passes['total'] - 1} perturbed passes of "
            f"each stage. One step moves any z2 by at most {margins['move']:.2g}; the margins:")
        notes = textwrap.fill(paragraph, width=LINE_WIDTH, initial_indent="  ",
                              subsequent_indent="  ", break_on_hyphens=False).splitlines()
        notes.append(self._margin_line(margins))
        return GradientCheck(result.relative_difference, result.max_abs_error, result.cost,
                             result.numerical, result.analytic, tuple(notes))

    def _margin_line(self, margins):
        """One line: this stage's margins, and each as a number of steps' moves of z2."""
        move = margins["move"]
        shown = lambda key, label: f"{label} {margins[key]:.2g} ({margins[key] / move:.0f} moves)"  # noqa: E731
        if self.model == "relu_l1":
            parts = [shown("relu", "min |z2|")]
        elif self.settings.get("aux_k") is None:
            parts = [shown("topk_relu", "min |z2| of the top k")]
            if "topk_gap" in margins:
                parts.append(shown("topk_gap", "gap k-th/(k+1)-th"))
        else:
            parts = [shown("aux_relu", "AuxK's top aux_k of the dead: min |z2|")]
            if "aux_gap" in margins:
                parts.append(shown("aux_gap", "gap"))
        return _fit(f"    {self.name.ljust(11)}  {', '.join(parts)}")


def _kinks_crossed(params, X, frozen, k, aux_k, dead):
    """True if at these params the sign of some z2, or a TopK selection, differs from ``frozen``
    (its "encoder": the model's pre-activations, TopK's by default)."""
    z2 = frozen.get("encoder", modern_sae.preactivations)(params, X)
    if not np.array_equal(z2 > 0, frozen["positive"]):
        return True
    if "mask" in frozen and not np.array_equal(modern_sae.topk_mask(z2, k), frozen["mask"]):
        return True
    return ("aux_mask" in frozen
            and not np.array_equal(modern_sae.auxk_mask(z2, dead, aux_k), frozen["aux_mask"]))


MODERN_STAGES = [
    ModernStage("ReLU + L1", "relu_l1", dict(l1=0.5, lam=0.01)),
    ModernStage("TopK", "topk", dict(k=3)),
    ModernStage("TopK + AuxK", "topk", dict(k=3, aux_k=2, alpha=0.5, dead=(4, 5, 6, 7))),
]


# ---------------------------------------------------------------------------
# The stacked network of stacked_autoencoder.py, fine-tuned as one (UFLDL)
# ---------------------------------------------------------------------------

STACKED_TITLE = "stacked_autoencoder.cost_and_grad: encoders + softmax, fine-tuning (docs/stacked.md)"
STACKED_STEP_FACTOR = 0.3    # their step is 3e-5 at the default eps: see StackedStage


@dataclass(frozen=True)
class StackedStage:
    """The fine-tuning cost on its own small random network (every parameter checked).

    sizes: the layers' widths, input first (two hidden layers of different
    widths by default); X (m, sizes[0]) = u^3 with u uniform on [0, 1],
    random labels, weights and biases from ``init_stacked_params``. The
    table's blocks W^(l) and b^(l) hold the largest error over every encoder
    (``--show`` prints each encoder's pairs); theta and b are the softmax's.
    The step is eps * STACKED_STEP_FACTOR: at the notes' 1e-4 the central
    difference's own truncation error reaches 1.3e-9 on some seeds (measured
    over 30). The autoencoder's cost_fn, params and X are not used.
    """

    name: str
    settings: dict = field(default_factory=dict)
    seed: int = 0
    title: str = STACKED_TITLE
    step_factor: float = STACKED_STEP_FACTOR

    def check(self, cost_fn, params, X, eps=EPS) -> GradientCheck:
        eps = eps * self.step_factor

        settings = {"sizes": (8, 6, 4), "n_classes": 5, "m": 12, "lam": 1e-3, "bias": True,
                    **self.settings}
        sizes, n_classes, bias = list(settings["sizes"]), settings["n_classes"], settings["bias"]
        rng = np.random.default_rng(self.seed)
        params = stacked.init_stacked_params(sizes, n_classes, rng, bias=bias)
        X = rng.uniform(0.0, 1.0, size=(settings["m"], sizes[0])) ** 3     # (m, s_1)
        y = rng.integers(0, n_classes, size=settings["m"])                 # (m,)

        def objective(blocks):
            cost, grads = stacked.cost_and_grad(_stacked_nested(blocks), X, y, lam=settings["lam"])
            return cost, _stacked_blocks(grads)

        result = check_gradient(objective, stacked.pack(params),
                                lambda theta: _stacked_blocks(
                                    stacked.unpack(theta, sizes, n_classes, bias=bias)), eps)
        note = (f"  float64, X = u^3 with u uniform on [0, 1], random labels (seed {self.seed}). "
                f"Step eps * {self.step_factor:g} = {eps:g}: at the notes' 1e-4 the central "
                f"difference's own truncation error reaches 1.3e-9 on some seeds (at most "
                f"3.3e-10 at 3e-5 over 30 seeds). Blocks: W^(l), b^(l) the largest error over "
                f"every encoder; theta, b the softmax.")
        notes = tuple(textwrap.fill(note, width=LINE_WIDTH, subsequent_indent="  ",
                                    break_on_hyphens=False).splitlines())
        errors = result.max_abs_error
        grouped = {"W^(l)": max(v for k, v in errors.items() if k.startswith("W")),
                   "b^(l)": max(v for k, v in errors.items() if k[0] == "b" and k[1:].isdigit()),
                   "theta": errors["theta"]}
        if "b" in errors:
            grouped["b"] = errors["b"]
        return dataclasses.replace(result, notes=notes, max_abs_error=grouped)


def _stacked_blocks(nested):
    """The stacked network's nested params as flat blocks: W1, b1, ..., theta[, b]."""
    blocks = {}
    for l, layer in enumerate(nested["stack"], start=1):
        blocks[f"W{l}"], blocks[f"b{l}"] = layer["W"], layer["b"]
    blocks["theta"] = nested["softmax"]["W"]
    if "b" in nested["softmax"]:
        blocks["b"] = nested["softmax"]["b"]
    return blocks


def _stacked_nested(blocks):
    """Inverse of ``_stacked_blocks``."""
    depth = sum(1 for name in blocks if name.startswith("W"))
    softmax = {"W": blocks["theta"], **({"b": blocks["b"]} if "b" in blocks else {})}
    return {"stack": [{"W": blocks[f"W{l}"], "b": blocks[f"b{l}"]} for l in range(1, depth + 1)],
            "softmax": softmax}


STACKED_STAGES = [
    StackedStage("two encoders", dict(sizes=(8, 6, 4), n_classes=5)),
    StackedStage("no softmax bias", dict(sizes=(8, 6, 4), n_classes=5, bias=False)),
    StackedStage("three encoders", dict(sizes=(7, 5, 6, 3), n_classes=3)),
]
STAGES = AUTOENCODER_STAGES + [SoftmaxStage()] + MODERN_STAGES + STACKED_STAGES


# ---------------------------------------------------------------------------
# Running the stages: an error in the checked function is one line, not a traceback
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StageError:
    """A stage whose check could not finish: the function raised, or returned
    something other than (cost, grads). ``reason`` is one line, e.g.
    "NotImplementedError: delta2 (m, n_hidden) (exercise.py:148)". It reads
    like a failed GradientCheck (NaN relative difference, no blocks)."""

    reason: str
    relative_difference: float = float("nan")
    max_abs_error: dict = field(default_factory=dict)
    cost: float = float("nan")
    numerical: dict | None = None
    analytic: dict | None = None


def run_stages(cost_fn, params, X, stages=STAGES, eps=EPS):
    """Check cost_fn at every stage: a list of (stage, GradientCheck or StageError).

    An exception raised during a stage (by cost_fn, or a bad return value)
    ends that stage only, as a StageError. NumPy's division by zero,
    overflow and invalid operations raise there (FloatingPointError), so
    that they name their line instead of turning into NaN.
    """
    return [(stage, _run_stage(stage, cost_fn, params, X, eps)) for stage in stages]


def _run_stage(stage, cost_fn, params, X, eps):
    try:
        with np.errstate(divide="raise", over="raise", invalid="raise"):
            return stage.check(cost_fn, params, X, eps)
    except Exception as exc:  # the checked function's bug, reported on one line
        return StageError(describe_exception(exc, _source_file(cost_fn)))


def describe_exception(exc, source_file=None) -> str:
    """One line: "Type: message (file.py:line)", the line being the deepest
    frame of the traceback in source_file (the checked function's file), else
    the deepest outside this module. A BadReturnValue is its message alone."""
    message = " ".join(str(exc).split())
    if isinstance(exc, BadReturnValue):
        return message
    text = type(exc).__name__ + (f": {message}" if message else "")
    frames = traceback.extract_tb(exc.__traceback__)
    ours = os.path.abspath(__file__)
    mine = [f for f in frames if source_file and _same_file(f.filename, source_file)]
    others = [f for f in frames if not _same_file(f.filename, ours)]
    frame = (mine or others or frames or [None])[-1]
    if frame is None:
        return text
    return f"{text} ({os.path.basename(frame.filename)}:{frame.lineno})"


def _same_file(a, b):
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


def _source_file(fn):
    """The file that defines fn, or None (a builtin, a partial, ...)."""
    try:
        return inspect.getsourcefile(inspect.unwrap(fn))
    except (TypeError, ValueError):
        return None


def failing_stages(results, tol=TOLERANCE):
    """Names of the stages whose relative difference is not below tol (a
    StageError's is NaN: it fails), or whose J is not the notes' J."""
    return [stage.name for stage, check in results if not passes(check, tol)]


def near_threshold_stages(results, tol=TOLERANCE, factor=NEAR_FACTOR):
    """Names of the failing stages with tol <= relative difference < factor * tol:
    those where the central difference's own truncation error may be the cause."""
    return [stage.name for stage, check in results
            if tol <= check.relative_difference < factor * tol]


# ---------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------


def format_table(results, tol=TOLERANCE, show=0) -> str:
    """One row per stage: J, relative difference, then one column per
    parameter block holding its largest |numerical - analytic|, then ok/FAIL.

    A StageError's row is its stage name and "FAILED: reason", cut to
    LINE_WIDTH columns. show > 0 adds, under each row, the first ``show``
    (numerical, analytic) pairs of each block, like UFLDL's disp([numgrad grad]).
    """
    blocks = list(dict.fromkeys(name for _, check in results for name in check.max_abs_error))
    header = ["stage", "J", "rel. diff", *blocks, ""]
    rows = [header]
    for stage, check in results:
        if isinstance(check, StageError):
            continue
        errors = [check.max_abs_error.get(b) for b in blocks]
        rows.append([
            stage.name,
            f"{check.cost:.8g}",
            f"{check.relative_difference:.3e}",
            *["" if e is None else f"{e:.1e}" for e in errors],
            "ok" if passes(check, tol) else "FAIL",
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    widths[0] = max([widths[0]] + [len(stage.name) for stage, _ in results])

    def line(row):
        return "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip()

    lines = [line(header)] if len(rows) > 1 else []     # no numbers, no column heads
    numbered = iter(rows[1:])
    for stage, check in results:
        if isinstance(check, StageError):
            lines.extend(_failure_lines(f"{stage.name.ljust(widths[0])}  FAILED: ", check.reason))
            continue
        lines.append(line(next(numbered)))
        if getattr(check, "cost_error", ""):
            lines.extend(_failure_lines("  J: ", check.cost_error))
        if show > 0 and check.numerical is not None:
            lines.extend(format_pairs(check.numerical, check.analytic, show))
    return "\n".join(lines)


def format_pairs(numerical, analytic, n) -> list:
    """The first n (numerical, analytic) pairs of each block, one line each."""
    lines = [f"    {'':<14}{'numerical':>22}{'analytic':>22}"]
    for name, num in numerical.items():
        ana = np.asarray(analytic[name])
        for flat_index in range(min(n, num.size)):
            index = np.unravel_index(flat_index, num.shape)
            label = f"{name}[{', '.join(map(str, index))}]"
            pair = num.flat[flat_index], ana.flat[flat_index]
            lines.append(f"    {label:<14}{pair[0]:>22.12e}{pair[1]:>22.12e}")
    return lines


def format_settings(stages) -> str:
    """One line per stage: its name and settings ("+ weight decay  decoder=sigmoid ...")."""
    width = max(len(stage.name) for stage in stages)
    return "\n".join(_fit(f"  {stage.name.ljust(width)}  {_format_settings(stage.settings)}")
                     for stage in stages)


def _format_settings(settings) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())


def _failure_lines(lead, reason):
    """``lead + reason`` wrapped into lines of at most LINE_WIDTH columns, aligned under reason.

    Nothing of a long message (NumPy's shapes, say) is lost; a single word
    too long for a line is cut, keeping a trailing " (file.py:line)".
    """
    wrapped = textwrap.wrap(lead + reason, width=LINE_WIDTH, subsequent_indent=" " * len(lead),
                            break_long_words=False, break_on_hyphens=False)
    place = re.search(r" \([^()]+:\d+\)$", reason)
    if (place and len(wrapped) > 1 and wrapped[-1].strip() == place.group(0).strip()
            and len(wrapped[-2] + place.group(0)) <= LINE_WIDTH):
        wrapped[-2:] = [wrapped[-2] + place.group(0)]        # the place on the line it ends
    return [_fit(line) for line in wrapped]


def _fit(text, width=LINE_WIDTH) -> str:
    """text cut to width columns; a cut keeps a trailing " (file.py:line)"."""
    if len(text) <= width:
        return text
    place = re.search(r" \([^()]+:\d+\)$", text)
    tail = place.group(0) if place else ""
    return text[:width - len(tail) - 3] + "..." + tail


def _wrap(text, indent="  ") -> str:
    return textwrap.fill(text, width=LINE_WIDTH, subsequent_indent=indent, break_on_hyphens=False)


# ---------------------------------------------------------------------------
# --cost: any function with cost_and_grad's signature
# ---------------------------------------------------------------------------


class CostFunction(NamedTuple):
    """A function to check and the label of its section."""

    label: str
    fn: Callable


# Keyword arguments every stage may pass (cost_and_grad's signature).
SIGNATURE = "(params, X, *, penalty, rho, beta, lam, decoder)"


def load_cost_function(text) -> CostFunction:
    """The function named by "FILE.py:FUNCTION" or "module:FUNCTION".

    A path (ending in .py or containing a path separator) is loaded from that
    file; anything else is imported as a module. The function must accept
    cost_and_grad's signature. Raises argparse.ArgumentTypeError with one line
    saying what is wrong (argparse adds "argument --cost:" and exits with 2).
    """
    where, colon, name = text.rpartition(":")
    if not colon or not where or not name:
        raise argparse.ArgumentTypeError(
            f"expected FILE.py:FUNCTION or module:FUNCTION, e.g. exercise.py:cost_and_grad, "
            f"got {text!r}")
    if where.endswith(".py") or os.sep in where or "/" in where:
        module = _load_file(where)
    else:
        module = _import_module(where)
    if not hasattr(module, name):
        raise argparse.ArgumentTypeError(f"{where} has no function {name!r}")
    fn = getattr(module, name)
    if not callable(fn):
        raise argparse.ArgumentTypeError(f"{where}:{name} is a {type(fn).__name__}, not a function")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        signature = None                      # a builtin or the like: let the stages tell
    if signature is not None:
        try:
            signature.bind(None, None, penalty="kl", rho=RHO, beta=BETA, lam=LAM, decoder="sigmoid")
        except TypeError as exc:
            raise argparse.ArgumentTypeError(
                f"{where}:{name} does not take cost_and_grad's arguments {SIGNATURE}: {exc}"
            ) from None
    return CostFunction(text, fn)


def _load_file(path):
    if not os.path.isfile(path):
        raise argparse.ArgumentTypeError(f"no such file: {path!r}")
    module_name = os.path.splitext(os.path.basename(path))[0]
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        raise argparse.ArgumentTypeError(
            f"importing {path} failed: {describe_exception(exc, path)}") from None
    return module


def _import_module(name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            raise argparse.ArgumentTypeError(
                f"no module named {name!r} (for a file, give its path: {name}.py)") from None
        raise argparse.ArgumentTypeError(
            f"importing {name} failed: {describe_exception(exc)}") from None
    except (Exception, SystemExit) as exc:
        raise argparse.ArgumentTypeError(
            f"importing {name} failed: {describe_exception(exc)}") from None


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=(
            "Check cost functions against central differences, in UFLDL's stages, on a "
            "small float64 net: by default the notes' model as sparse_autoencoder.cost_and_grad "
            "computes it; --section or --all add the tuned fast.cost_and_grad, softmax "
            "regression, modern_sae.py's ReLU + L1 and TopK (at step eps/10, away from their "
            "kinks) and the stacked network. With --cost, a function of yours, whose J must "
            "also be the notes' J. First checks the checker on h(x) = x1^2 + 3 x1 x2 at "
            "(4, 10). Exit status 0 when every relative difference ||num - grad|| / "
            f"||num + grad|| is below {TOLERANCE:g} (and every J is right), 1 otherwise, 2 bad "
            "options."
        )
    )
    parser.add_argument("--cost", type=load_cost_function, default=None,
                        metavar="FILE.py:FUNCTION",
                        help="check this function instead (also module:FUNCTION), e.g. "
                             "exercise.py:cost_and_grad; it must take cost_and_grad's arguments "
                             f"{SIGNATURE} and return (cost, grads)")
    parser.add_argument("--section", dest="sections", action="append", choices=list(SECTIONS),
                        metavar="NAME",
                        help="check this section of the project's own functions (repeatable): "
                             "notes (the readable sparse_autoencoder.cost_and_grad, the default), "
                             "fast (the tuned fast.cost_and_grad), softmax, modern (ReLU + L1 and "
                             "TopK, away from their kinks), stacked (the fine-tuning cost)")
    parser.add_argument("--all", action="store_true",
                        help="check every section, in the order above (what the tests and CI run)")
    parser.add_argument("--show", type=nonnegative_int, default=0, metavar="N",
                        help="print the first N (numerical, analytic) pairs of each parameter "
                             "block under each stage, like UFLDL's disp([numgrad grad]) "
                             "(default: %(default)s)")
    parser.add_argument("--visible", type=positive_int, default=8,
                        help="number of visible units n_visible (default: %(default)s)")
    parser.add_argument("--hidden", type=positive_int, default=5,
                        help="number of hidden units n_hidden (default: %(default)s)")
    parser.add_argument("--examples", type=positive_int, default=10,
                        help="number of examples m, the rows of X (default: %(default)s)")
    parser.add_argument("--seed", type=nonnegative_int, default=0,
                        help="seed for the weights, biases and X (default: %(default)s)")
    parser.add_argument("--eps", type=positive_float, default=EPS,
                        help="central-difference step (default: %(default)g, the notes' value; "
                             "much smaller steps lose to round-off)")
    args = parser.parse_args(argv)
    if args.cost is not None and (args.sections or args.all):
        parser.error("--cost checks one function on the notes' stages; --section and --all "
                     "select the project's own sections: give one or the other")
    if args.all:
        args.sections = list(SECTIONS)
    elif not args.sections:
        args.sections = list(DEFAULT_SECTIONS)
    args.sections = list(dict.fromkeys(args.sections))      # each once, in the order given
    refuse_what_the_model_refuses(parser, args)
    return args


def refuse_what_the_model_refuses(parser, args):
    """``parser.error`` (exit 2, one line) for sizes and steps the checked model would refuse.

    Sizes: the net's parameters and X (float64) must fit in memory (else
    ``init_params`` refuses them); --hidden is blamed unless one hidden unit
    would not fit either (then --visible), --examples for X. The step: the
    checker moves one parameter at a time by --eps; a step so large that the
    moved parameters are refused by ``validation.check_magnitudes`` in some
    stage (their squares, the weight decay or z2 overflow) is refused here,
    naming --eps, rather than failing every stage.
    """
    from saelab.checks import memory
    from saelab.checks import validation

    def params_bytes(n_hidden):
        return (2 * args.visible * n_hidden + args.visible + n_hidden) * 8 * 8   # params, grads, copies

    for option, nbytes, what in (
            ("--hidden" if params_bytes(1) <= (memory.available_memory() or float("inf"))
             else "--visible", params_bytes(args.hidden),
             f"a net of {args.visible} -> {args.hidden} and its gradients"),
            ("--examples", args.examples * args.visible * 8 * 4, f"X of {args.examples} examples")):
        try:
            memory.check_memory(option, nbytes, what)
        except ValueError as exc:
            parser.error(str(exc))
    params, X = make_problem(args.visible, args.hidden, args.examples, args.seed)
    for name in sae.PARAM_NAMES:                 # the entry farthest from 0, moved away from 0
        moved = {key: value.copy() for key, value in params.items()}
        flat = moved[name].reshape(-1)
        i = int(np.argmax(np.abs(flat)))
        flat[i] += args.eps if flat[i] >= 0 else -args.eps
        for stage in AUTOENCODER_STAGES:
            settings = {"penalty": "kl", "rho": 0.01, "beta": 3.0, "lam": 1e-4, "decoder": "sigmoid",
                        **stage.settings}
            try:
                with np.errstate(all="ignore"):
                    validation.check_magnitudes(moved, X.shape[0], float(np.abs(X).max()),
                                                penalty=settings["penalty"], beta=settings["beta"],
                                                lam=settings["lam"], decoder=settings["decoder"])
            except ValueError as exc:
                parser.error(f"--eps: {args.eps!r} is too large a step: the moved parameters are "
                             f"refused by the model in stage {stage.name!r} ({exc})")


class Section(NamedTuple):
    """One table of the report: a label, the function its stages check
    (None for stages that bring their own cost), and the stages."""

    label: str
    fn: Callable | None
    stages: list


SECTIONS = {
    "notes": Section("sparse_autoencoder.cost_and_grad (readable)", sae.cost_and_grad,
                     AUTOENCODER_STAGES),
    "fast": Section("fast.cost_and_grad (tuned)", fast.cost_and_grad, AUTOENCODER_STAGES),
    "softmax": Section(SoftmaxStage.title, None, [SoftmaxStage()]),
    "modern": Section(MODERN_TITLE, None, MODERN_STAGES),
    "stacked": Section(STACKED_TITLE, None, STACKED_STAGES),
}
DEFAULT_SECTIONS = ("notes",)


def main(argv=None, cost_fn=None, stages=None) -> int:
    """Run the command; returns the exit status.

    The sections that run: the one function ``--cost`` names (else
    ``cost_fn``, for tests) on ``stages`` (default: the notes' six), or else
    the project's own sections that --section / --all select (default: the
    notes' model alone, ``sparse_autoencoder.cost_and_grad``).
    """
    args = parse_args(argv)
    if args.cost is not None or cost_fn is not None:
        function = args.cost or CostFunction(_qualified_name(cost_fn), cost_fn)
        sections = [Section(function.label, function.fn, list(stages or AUTOENCODER_STAGES))]
    else:
        sections = [SECTIONS[name] for name in args.sections]

    failed = []                  # (section label, failing stage names, number of stages)
    if not _print_checker(args.eps) < TOLERANCE:
        failed.append(("the checker itself", ["h(x) = x1^2 + 3 x1 x2"], 1))
    params, X = make_problem(args.visible, args.hidden, args.examples, args.seed)
    autoencoder_stages = next((s.stages for s in sections if s.fn is not None), [])
    if autoencoder_stages:
        _print_problem(args, params, X, autoencoder_stages, compares_cost=args.cost is not None
                       or cost_fn is not None)

    all_results = []
    for label, fn, section_stages in sections:
        print()
        print(_fit(label))
        if fn is None:                        # stages with their own cost: their settings here
            print(format_settings(section_stages))
        results = run_stages(fn, params, X, section_stages, args.eps)
        print(format_table(results, show=args.show))
        notes = [note for _, check in results for note in getattr(check, "notes", ())]
        for note in dict.fromkeys(notes):            # each line once, in order
            print(_fit(note))
        all_results += results
        if failing_stages(results):
            failed.append((label, failing_stages(results), len(results)))
    print()

    if not failed:
        more = ("" if args.cost is not None or cost_fn is not None or len(sections) == len(SECTIONS)
                else "; the other sections: --section NAME or --all")
        print(_fit(f"all {len(all_results)} stages below {TOLERANCE:g}{more}"))
        return 0
    sys.stdout.flush()                        # the report first, then the verdict on stderr
    print(format_verdict(failed, all_results), file=sys.stderr)
    return 1


def _print_checker(eps):
    """Print the check of the checker; return its relative difference."""
    numerical, diff = check_the_checker(eps)
    print("checking the checker: h(x) = x1^2 + 3 x1 x2 at x = (4, 10), exact gradient (38, 12)")
    print(f"  numerical ({numerical[0]:.10g}, {numerical[1]:.10g}), relative difference "
          f"{diff:.4e} (UFLDL, eps 1e-4: about 2.1452e-12)")
    return diff


def _print_problem(args, params, X, stages, compares_cost=False):
    """Print the net every stage is checked on, the stages, and how to read the tables."""
    rho_hat = sae.encode(params, X).mean(axis=0)                 # (n_hidden,)
    print()
    print(_wrap(f"the net: {args.visible} visible, {args.hidden} hidden, {args.examples} "
                f"examples (seed {args.seed}), float64, eps {args.eps:g}; "
                f"rho_hat in [{rho_hat.min():.2f}, {rho_hat.max():.2f}]"))
    if stages:
        print("the stages (one term at a time: the first failing row names the wrong term):")
        print(format_settings(stages))
    print(_wrap("J: the cost at the net's parameters"
                + (", which must also be the notes' J (sparse_autoencoder.cost_and_grad's)"
                   if compares_cost else "")
                + f". rel. diff: ||num - grad|| / ||num + grad|| over all parameters, ok below "
                f"{TOLERANCE:g}. The blocks (W1 .. b2): the largest |num - grad| in each.",
                indent=""))


def format_verdict(failed, results, tol=TOLERANCE) -> str:
    """The lines that end a failed run: which stages of which section failed,
    the truncation-error note when a failure is within NEAR_FACTOR of tol,
    and what a NotImplementedError means.

    failed: [(section label, failing stage names, number of stages in it)].
    results: every (stage, check) of the run.
    """
    lines = []
    for label, names, n_stages in failed:
        which = f"all {n_stages} stages" if len(names) == n_stages > 1 else ", ".join(names)
        lines.append(_wrap(f"FAILED {label}: {which}"))
    if any(isinstance(check, GradientCheck) and not check.relative_difference < tol
           for _, check in results):
        lines.append(_wrap("(--show N prints the first N numerical and analytic pairs of each "
                           "block under each stage: docs/gradcheck.md, \"Looking inside a block\")",
                           indent=" "))
    wrong_cost = [stage.name for stage, check in results if getattr(check, "cost_error", "")]
    if wrong_cost:
        lines.append(_wrap(
            f"(J is not the notes' J in: {', '.join(wrong_cost)}. A gradient that matches its "
            f"cost is not enough: the cost must be the notes' J too; the J: lines say how they "
            f"differ)", indent=" "))
    near = near_threshold_stages(results, tol)
    if near:
        lines.append(_wrap(
            f"(rel. diff within {NEAR_FACTOR}x of {tol:g} in: {', '.join(near)}. That may be "
            f"the central difference's own truncation error, about eps^2 f'''/6: rerun with "
            f"--eps 1e-5; it shrinks 100-fold, a wrong gradient does not)", indent=" "))
    if any(isinstance(check, StageError) and check.reason.startswith("NotImplementedError")
           for _, check in results):
        lines.append(_wrap(
            "(NotImplementedError: a blank still to be written. A stage passes once every "
            "blank it runs is written; its line names the next one)", indent=" "))
    return "\n".join(lines)


def _qualified_name(fn):
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}.{name}" if module else name


if __name__ == "__main__":
    sys.exit(main())
