"""Numerical gradient checking, as in the notes and UFLDL's exercise.

Library:
    numerical_gradient(f, theta, eps=1e-4)   central differences, one coordinate at a time
    relative_difference(a, b)                ||a - b|| / ||a + b||, the exercise's measure
    check_gradient(objective, theta, unpack, eps)   one check, errors per parameter block
    AUTOENCODER_STAGES, Stage                UFLDL's staged check of cost_and_grad
    STAGES                                   those, then SoftmaxStage (softmax.py)
    run_stages(cost_fn, ...)                 run a list of stages

Command:
    python gradcheck.py [--visible 8] [--hidden 5] [--examples 10] [--seed 0] [--eps 1e-4]

It first checks the checker on h(x) = x1^2 + 3 x1 x2 at (4, 10), then checks
cost_and_grad stage by stage (reconstruction only, + weight decay, + KL
sparsity, L1 sparsity, linear decoder, everything together), then the
softmax classifier of softmax.py, and prints one row per stage. Exit status 0 when every relative difference is below
TOLERANCE (1e-9, the exercise's bar), 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import numpy as np

from argtypes import nonnegative_int, positive_float, positive_int
import sparse_autoencoder as sae

TOLERANCE = 1e-9          # UFLDL: a correct autoencoder gradient gives diff < 1e-9
EPS = 1e-4                # the notes' step


def numerical_gradient(f, theta, eps=1e-4):
    """Central-difference gradient of a scalar function f at theta.

    g_i = (f(theta + eps e_i) - f(theta - eps e_i)) / (2 eps), for each i.

    f: maps a 1-D float array to a scalar. theta: 1-D float array; it is
    perturbed in place one coordinate at a time and each coordinate is
    restored to its exact original value afterwards. Returns an array with
    theta's shape and dtype.
    """
    if not isinstance(theta, np.ndarray) or theta.ndim != 1 or theta.dtype.kind != "f":
        raise ValueError(
            f"theta: expected a 1-D float numpy array, got "
            f"{getattr(theta, 'shape', type(theta).__name__)} of dtype {getattr(theta, 'dtype', None)}"
        )
    if not (np.isfinite(eps) and eps > 0):
        raise ValueError(f"eps: expected a positive finite step, got {eps!r}")
    grad = np.empty_like(theta)
    for i in range(theta.size):
        original = theta[i]
        theta[i] = original + eps
        f_plus = float(f(theta))
        theta[i] = original - eps
        f_minus = float(f(theta))
        theta[i] = original                      # restore exactly
        grad[i] = (f_plus - f_minus) / (2 * eps)
    return grad


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
    """Result of one check: overall relative difference, max |error| per block."""

    relative_difference: float
    max_abs_error: dict          # block name -> max |numerical - analytic|


def check_gradient(objective, theta, unpack, eps=EPS) -> GradientCheck:
    """Compare objective's gradient with central differences at theta.

    objective: params dict -> (cost, grads dict with the same keys and shapes).
    theta: the packed parameters (1-D float array); unpack(theta) -> params dict
    (for the autoencoder, ``sae.unpack`` with the sizes bound). theta is
    perturbed in place during the check and restored exactly.
    """
    numerical = unpack(numerical_gradient(lambda t: objective(unpack(t))[0], theta, eps))
    _, analytic = objective(unpack(theta))
    names = list(numerical)
    for name in names:
        got = np.shape(analytic.get(name)) if name in analytic else "missing"
        if got != numerical[name].shape:
            raise ValueError(
                f"grads['{name}']: expected shape {numerical[name].shape} like the "
                f"parameter, got {got}"
            )
    flat = lambda blocks: np.concatenate([np.ravel(blocks[n]) for n in names])  # noqa: E731
    return GradientCheck(
        relative_difference=relative_difference(flat(numerical), flat(analytic)),
        max_abs_error={
            n: float(np.max(np.abs(numerical[n] - analytic[n]), initial=0.0)) for n in names
        },
    )


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
    table) and ``check(cost_fn, params, X, eps) -> GradientCheck``; a stage
    for another model can ignore cost_fn, params and X and check its own cost.
    """

    name: str
    settings: dict = field(default_factory=dict)

    def check(self, cost_fn, params, X, eps=EPS) -> GradientCheck:
        n_hidden, n_visible = params["W1"].shape
        return check_gradient(
            lambda p: cost_fn(p, X, **self.settings),
            sae.pack(params),
            lambda theta: sae.unpack(theta, n_visible, n_hidden),
            eps,
        )


@dataclass(frozen=True)
class SoftmaxStage:
    """Softmax regression (softmax.py) on its own small random problem.

    The problem is ``softmax.softmax_gradcheck_stage(seed, **settings)``:
    X (m, n_features) uniform on [0, 1], random labels, W and b standard
    normal. The autoencoder's cost_fn, params and X are not used.
    """

    name: str = "softmax regression"
    settings: dict = field(default_factory=lambda: dict(lam=1e-4, m=20, n_features=8, n_classes=4))
    seed: int = 0

    def check(self, cost_fn, params, X, eps=EPS) -> GradientCheck:
        import softmax

        f, theta, analytic = softmax.softmax_gradcheck_stage(self.seed, **self.settings)
        numerical = numerical_gradient(f, theta, eps)
        blocks = lambda t: softmax.unpack_softmax(  # noqa: E731
            t, self.settings["n_features"], self.settings["n_classes"])
        num, ana = blocks(numerical), blocks(analytic)
        return GradientCheck(
            relative_difference=relative_difference(numerical, analytic),
            max_abs_error={n: float(np.max(np.abs(num[n] - ana[n]))) for n in num},
        )


AUTOENCODER_STAGES = [
    Stage("reconstruction only", dict(decoder="sigmoid", penalty="none", lam=0.0)),
    Stage("+ weight decay", dict(decoder="sigmoid", penalty="none", lam=LAM)),
    Stage("+ KL sparsity", dict(decoder="sigmoid", penalty="kl", rho=RHO, beta=BETA, lam=LAM)),
    Stage("L1 sparsity", dict(decoder="sigmoid", penalty="l1", beta=BETA, lam=LAM)),
    Stage("linear decoder", dict(decoder="linear", penalty="none", lam=0.0)),
    Stage("everything together", dict(decoder="linear", penalty="kl", rho=RHO, beta=BETA, lam=LAM)),
]
STAGES = AUTOENCODER_STAGES + [SoftmaxStage()]


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


def run_stages(cost_fn, params, X, stages=STAGES, eps=EPS):
    """Check cost_fn at every stage: a list of (stage, GradientCheck)."""
    return [(stage, stage.check(cost_fn, params, X, eps)) for stage in stages]


def failing_stages(results, tol=TOLERANCE):
    """Names of the stages whose relative difference is not below tol."""
    return [stage.name for stage, check in results if not check.relative_difference < tol]


def format_table(results, tol=TOLERANCE) -> str:
    """One row per stage: settings, relative difference, then one column per
    parameter block holding its largest |numerical - analytic|."""
    blocks = list(dict.fromkeys(name for _, check in results for name in check.max_abs_error))
    header = ["stage", "settings", "rel. diff", *blocks, ""]
    rows = [header]
    for stage, check in results:
        errors = [check.max_abs_error.get(b) for b in blocks]
        rows.append([
            stage.name,
            _format_settings(stage.settings),
            f"{check.relative_difference:.3e}",
            *["" if e is None else f"{e:.1e}" for e in errors],
            "ok" if check.relative_difference < tol else "FAIL",
        ])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows
    )


def _format_settings(settings) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=(
            "Check sparse_autoencoder.cost_and_grad against central differences, "
            "in UFLDL's stages, on a small float64 net. First checks the checker "
            "on h(x) = x1^2 + 3 x1 x2 at (4, 10). Exit status 0 when every "
            f"relative difference ||num - grad|| / ||num + grad|| is below {TOLERANCE:g}, "
            "1 otherwise."
        )
    )
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
    return parser.parse_args(argv)


def main(argv=None, cost_fn=sae.cost_and_grad, stages=STAGES) -> int:
    """Run the command; returns the exit status. cost_fn replaces the model's (tests)."""
    args = parse_args(argv)
    failed = []

    numerical, diff = check_the_checker(args.eps)
    print("checking the checker: h(x) = x1^2 + 3 x1 x2 at x = (4, 10), exact gradient (38, 12)")
    print(f"  numerical ({numerical[0]:.10g}, {numerical[1]:.10g}), relative difference "
          f"{diff:.4e} (UFLDL, eps 1e-4: about 2.1452e-12)")
    if not diff < TOLERANCE:
        failed.append("the checker itself")

    params, X = make_problem(args.visible, args.hidden, args.examples, args.seed)
    rho_hat = sae.encode(params, X).mean(axis=0)                 # (n_hidden,)
    print()
    print(f"cost_and_grad on {args.visible} visible, {args.hidden} hidden, {args.examples} "
          f"examples (seed {args.seed}), float64, eps {args.eps:g}; "
          f"rho_hat in [{rho_hat.min():.2f}, {rho_hat.max():.2f}]")
    print("rel. diff = ||num - grad|| / ||num + grad|| over all parameters; "
          "W1 .. b2 = largest |num - grad| in that block")
    results = run_stages(cost_fn, params, X, stages, args.eps)
    print(format_table(results))
    print()
    failed += failing_stages(results)
    if failed:
        print(f"FAILED: relative difference not below {TOLERANCE:g} for: {', '.join(failed)}",
              file=sys.stderr)
        print("(a few 1e-9 is the central difference's own truncation error, about "
              "eps^2 f'''/6: rerun with --eps 1e-5; it shrinks 100-fold, a wrong gradient does not)",
              file=sys.stderr)
        return 1
    print(f"all {len(results)} stages below {TOLERANCE:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
