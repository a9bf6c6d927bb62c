"""The sparsity-reconstruction frontier on MNIST: the notes' model beside today's SAEs.

    python frontier.py --data-dir ../shared/data/mnist            # about 15 minutes on 2 cores
    python frontier.py --data-dir ../shared/data/mnist --quick    # seconds (the tests run it)

Four families of sparse autoencoders, all with the same number of latents
(--hidden, default 256), trained on the 60,000 MNIST training images (pixels / 255)
and evaluated on the 10,000 test images, as Anthropic (2023-24) and Gao et
al. (2024) compare methods: normalized MSE against L0.

    kl_sigmoid   the notes: sigmoid units, KL penalty, sweeping rho (beta 3, lambda 3e-3)
    l1_sigmoid   the blog post: sigmoid units, L1 penalty, sweeping beta (lambda 3e-3)
    relu_l1      Anthropic's April 2024 update: ReLU (no pre-encoder bias), L1 weighted by
                 decoder norms, their recipe (input scaling, l1 warm-up, lr decay, clipping), sweeping l1
    topk         Gao et al.: TopK, unit-norm decoder, b2 at the geometric median, sweeping k
                 (and k = AUX_K_AT with AuxK, at the paper's relative weight and at the earlier
                 absolute one)

Every family is trained the same way: mini-batch Adam (``autoencoder.adam`` with
``fast.py`` for the sigmoid families, ``modern.adam_modern`` for the
others), the same batch size, epochs, seed and dtype; the learning rate is
1e-2 for the sigmoid families and 1e-3 for the others (``LEARNING_RATES``). The
sigmoid families keep the notes' sigmoid decoder and weight decay (their
model as the project trains it); the modern ones have a linear decoder and
no weight decay, as in the papers.

Metrics (``diagnostics.sparsity_metrics``, on the test images): L0 = mean
number of latents that fire per image (ReLU, TopK: a2 > 0; the sigmoid
units never reach 0, so for them a2 > 0.5, "L0 (a2 > 0.5)", hollow markers
in the figure); normalized MSE = sum ||x_hat - x||^2 / sum ||x - mean||^2
(= 1 - FVE); dead latents = those that never fire on the test images.

Writes to --out-dir (default runs/frontier): frontier.png (normalized MSE
against L0, log scales, one curve per family; beside it the dead fraction
per point and TopK with and without AuxK), frontier_features.png (decoder
columns W2[:, j] of one ReLU + L1 and one TopK model beside the notes'
filters, rows of W1), frontier_density.png (the feature-density histogram
of every point, one panel per family: log10 of each latent's firing
frequency on the test images), frontier_table.md (the table of points) and
frontier_results.json. Runs NumPy with one OpenBLAS thread unless
OPENBLAS_NUM_THREADS or OMP_NUM_THREADS says otherwise (small products;
two threads stall when other programs share the cores).
"""

from __future__ import annotations

import os


def limit_blas_threads():
    """One OpenBLAS thread unless the environment says otherwise (before NumPy is imported)."""
    if "OPENBLAS_NUM_THREADS" not in os.environ and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"


if __name__ == "__main__":
    limit_blas_threads()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from saelab import diagnostics  # noqa: E402
from saelab.checks import memory  # noqa: E402
from saelab.data import mnist  # noqa: E402
import sparse_autoencoder as sae  # noqa: E402
from saelab.checks.argtypes import nonempty_path, nonnegative_int, positive_float, positive_int  # noqa: E402
from saelab.files.atomic import atomic_write  # noqa: E402
from saelab.experiment import output_dir  # noqa: E402
from saelab.training.autoencoder import SparseAutoencoder  # noqa: E402
from saelab.training.modern import ModernAutoencoder  # noqa: E402

# ReLU + L1's l1 values: chosen by the pilot in docs/frontier.md so that L0 spans TopK's k.
RELU_L1_VALUES = (0.3, 1.0, 3.0, 10.0)
# family -> (label in the figure and table, swept hyperparameter, default values, quick values)
FAMILIES = {
    "kl_sigmoid": ("KL-sigmoid (the notes)", "rho", (0.01, 0.03, 0.1, 0.3), (0.03, 0.1)),
    "l1_sigmoid": ("L1-sigmoid (the blog post)", "beta", (0.03, 0.1, 0.3, 1.0), (0.1, 0.3)),
    "relu_l1": ("ReLU + L1 (Anthropic, April 2024)", "l1", RELU_L1_VALUES, (1.0, 3.0)),
    "topk": ("TopK (Gao et al. 2024)", "k", (4, 8, 16, 32, 64), (4, 16)),
}
SIGMOID_FAMILIES = ("kl_sigmoid", "l1_sigmoid")
SIGMOID_THRESHOLD = 0.5          # what counts as firing for a sigmoid unit
NOTES_BETA, NOTES_LAM = 3.0, 3e-3  # train_mnist.py's KL weight and weight decay
AUX_K_AT = 4                     # TopK's k for the run with AuxK (the smallest k: most dead latents)
AUX_K = 128                      # AuxK's k_aux (half the latents at --hidden 256)
# AuxK's weights: None = alpha relative to the data's variance (the paper's: alpha c, c from the
# training images); 1.0 = alpha alone in J, the weight of the earlier runs (26 times weaker on MNIST).
AUX_SCALES = (None, 1.0)
FEATURE_CHOICE = {"kl_sigmoid": 0.1, "relu_l1": None, "topk": 16}   # relu_l1: L0 nearest TopK's
COLORS = {"kl_sigmoid": "tab:blue", "l1_sigmoid": "tab:green", "relu_l1": "tab:orange",
          "topk": "tab:red"}
COLORMAPS = {"kl_sigmoid": "Blues", "l1_sigmoid": "Greens", "relu_l1": "Oranges", "topk": "Reds"}
MARKERS = {"kl_sigmoid": "o", "l1_sigmoid": "s", "relu_l1": "D", "topk": "^"}
# Adam's learning rate per family. The sigmoid families need a larger one: in a pilot (20,000
# images, 8 epochs, validated on training images 50,000-59,999), KL-sigmoid at rho 0.1 reached
# normalized MSE 0.66 with 87 dead units at lr 1e-3, 0.44 at 3e-3 and 0.35 with none dead at 1e-2;
# the modern families keep the papers' order of magnitude, 1e-3 (ReLU + L1 at l1 = 1 lost 77 of
# 256 latents at 1e-2). docs/frontier.md has the pilot's table.
LEARNING_RATES = {"kl_sigmoid": 1e-2, "l1_sigmoid": 1e-2, "relu_l1": 1e-3, "topk": 1e-3}
QUICK = {"examples": 1000, "test_examples": 500, "hidden": 32, "epochs": 2}
DEFAULTS = {"examples": 60000, "test_examples": 10000, "hidden": 256, "epochs": 6}


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train four families of sparse autoencoders on MNIST and draw the "
                    "sparsity-reconstruction frontier (normalized MSE against L0 on the test images).",
        epilog="Runs NumPy with one OpenBLAS thread unless OPENBLAS_NUM_THREADS or OMP_NUM_THREADS "
               "says otherwise. " + EXIT_STATUS_HELP)
    parser.add_argument("--data-dir", type=nonempty_path, default=Path("data/mnist"),
                        help="folder with the four MNIST IDX files (raw or .gz); missing ones are "
                             "downloaded into it (default data/mnist)")
    parser.add_argument("--examples", type=positive_int, default=None,
                        help=f"train on the first N training images (default {DEFAULTS['examples']}, "
                             f"--quick {QUICK['examples']})")
    parser.add_argument("--test-examples", type=positive_int, default=None,
                        help=f"evaluate on the first N test images (default {DEFAULTS['test_examples']}, "
                             f"--quick {QUICK['test_examples']})")
    parser.add_argument("--hidden", type=positive_int, default=None,
                        help=f"latents of every model (default {DEFAULTS['hidden']}, --quick {QUICK['hidden']})")
    parser.add_argument("--epochs", type=positive_int, default=None,
                        help=f"Adam epochs of every run (default {DEFAULTS['epochs']}, --quick {QUICK['epochs']})")
    parser.add_argument("--batch-size", type=positive_int, default=256,
                        help="Adam mini-batch size (default 256)")
    parser.add_argument("--lr", type=positive_float, default=None,
                        help="Adam learning rate of every family (default, per family: "
                             + ", ".join(f"{f} {lr:g}" for f, lr in LEARNING_RATES.items()) + ")")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="dtype of the computation (default float32: twice as fast; the metrics "
                             "agree with float64 to about 1e-6)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of every run (default 0)")
    parser.add_argument("--families", nargs="+", choices=tuple(FAMILIES), default=list(FAMILIES),
                        help="families to train (default all four)")
    parser.add_argument("--quick", action="store_true",
                        help="a few seconds: fewer and smaller runs (two points per family)")
    parser.add_argument("--out-dir", type=output_dir, default=Path("runs/frontier"),
                        help="folder for the figures, the table and the results (default runs/frontier)")
    parser.add_argument("--quiet", action="store_true", help="one line per run, no progress lines")
    return parser


EXIT_OK, EXIT_DATA, EXIT_RUN_FAILED, EXIT_OUTPUT_FAILED = 0, 1, 3, 4
EXIT_STATUS_HELP = ("Exit status: 0 every run trained and every output was written; 1 missing or "
                    "bad data files; 2 bad options; 3 a run diverged or failed (it is marked so "
                    "in the table and results, left out of the figures, and every output is "
                    "still written); 4 an output could not be written (one line each on stderr; "
                    "the others are written).")
DIVERGED_NMSE = 10.0             # a normalized MSE above this is 10x worse than predicting the mean


def parse_args(argv=None, parser=None):
    """The options, with what a run would fail on later refused now in one line (exit 2):
    sizes beyond MNIST or memory, a test set too small for the normalized MSE, and AuxK
    (TopK's extra run) with fewer than 2 training images or a batch of 1."""
    parser = build_parser() if parser is None else parser
    args = parser.parse_args(argv)
    sizes = settings(args)
    for option, value, available in (("--examples", sizes["examples"], 60_000),
                                     ("--test-examples", sizes["test_examples"], 10_000)):
        if value > available:
            parser.error(f"{option}: MNIST has {available} images in that split, got {value}")
    if sizes["test_examples"] < 2:
        parser.error(f"--test-examples: the normalized MSE divides by the test images' variance, "
                     f"which needs at least 2 images, got {sizes['test_examples']}")
    if "topk" in args.families and sizes["examples"] < 2:
        parser.error(f"--examples: TopK's AuxK run divides by the residuals' spread over a "
                     f"mini-batch, which needs at least 2 training images, got {sizes['examples']}")
    if "topk" in args.families and args.batch_size < 2:
        parser.error(f"--batch-size: TopK's AuxK run divides by the residuals' spread over a "
                     f"mini-batch, which needs at least 2 rows, got {args.batch_size}")
    problem = memory.training_memory_error(
        m=sizes["examples"] + sizes["test_examples"], n_visible=784, n_hidden=sizes["hidden"],
        itemsize=4 if args.dtype == "float32" else 8, optimizer="adam",
        data_option="--examples")
    if problem is not None:
        parser.error(problem[1])
    return args


def settings(args):
    """The sizes of the run: the options, or the defaults of --quick or of the full run."""
    base = QUICK if args.quick else DEFAULTS
    return {key: getattr(args, key) if getattr(args, key) is not None else value
            for key, value in base.items()}


def sweep(family, quick, n_hidden):
    """The values of the family's swept hyperparameter (k capped at n_hidden)."""
    _, _, values, quick_values = FAMILIES[family]
    values = quick_values if quick else values
    if family == "topk":
        values = tuple(sorted({min(v, n_hidden) for v in values}))
    return values


def make_estimator(family, value, *, n_hidden, lr, batch_size, epochs, seed, dtype, aux_k=None,
                   aux_scale=None):
    """The estimator of one point of the frontier."""
    common = dict(lr=lr, batch_size=batch_size, epochs=epochs, seed=seed, dtype=dtype)
    if family == "kl_sigmoid":
        return SparseAutoencoder(n_hidden, penalty="kl", rho=value, beta=NOTES_BETA, lam=NOTES_LAM,
                                 optimizer="adam", **common)
    if family == "l1_sigmoid":
        return SparseAutoencoder(n_hidden, penalty="l1", beta=value, lam=NOTES_LAM,
                                 optimizer="adam", **common)
    if family == "relu_l1":
        return ModernAutoencoder(n_hidden, model="relu_l1", l1=value, **common)
    return ModernAutoencoder(n_hidden, model="topk", k=value, aux_k=aux_k, aux_scale=aux_scale,
                             **common)


def evaluate(family, estimator, X_test):
    """diagnostics.sparsity_metrics of a trained estimator on X_test, with its own encoder."""
    if family in SIGMOID_FAMILIES:
        params = estimator.params_
        return diagnostics.sparsity_metrics(
            lambda x: sae.encode(params, x), lambda a2: sae.decode(params, a2, estimator.decoder),
            X_test, threshold=SIGMOID_THRESHOLD)
    return estimator.metrics(X_test)


def features(family, estimator):
    """The features drawn as tiles: rows of W1 for the notes' model, decoder columns W2[:, j] else."""
    params = estimator.params_
    return params["W1"] if family in SIGMOID_FAMILIES else params["W2"].T


def run_point(family, value, X_train, X_test, sizes, args, *, aux_k=None, aux_scale=None,
              stream=None):
    """Train one estimator, evaluate it; returns (point dict, estimator)."""
    stream = sys.stdout if stream is None else stream
    name = FAMILIES[family][1]
    lr = LEARNING_RATES[family] if args.lr is None else args.lr
    estimator = make_estimator(family, value, n_hidden=sizes["hidden"], lr=lr,
                               batch_size=args.batch_size, epochs=sizes["epochs"], seed=args.seed,
                               dtype=args.dtype, aux_k=aux_k, aux_scale=aux_scale)
    start = time.perf_counter()
    try:
        estimator.fit(X_train, progress=False if args.quiet else stream, progress_every=10.0)
        seconds = time.perf_counter() - start
        with np.errstate(all="ignore"):                   # a diverged model's metrics overflow
            metrics = evaluate(family, estimator, X_test)
    except (ValueError, ArithmeticError) as exc:          # this run only: the others go on
        seconds = time.perf_counter() - start
        point = {"family": family, "parameter": name, "value": value, "aux_k": aux_k,
                 "aux_scale": aux_scale if aux_k else None, "lr": lr, "train_seconds": seconds,
                 "status": "failed", "outcome": "failed",
                 "message": f"{type(exc).__name__}: {' '.join(str(exc).split())}"}
        print(f"{family} {name}={value:g}" + (f" aux_k={aux_k}" if aux_k else "")
              + f": FAILED ({point['message']})", file=stream, flush=True)
        return point, None
    point = {"family": family, "parameter": name, "value": value, "aux_k": aux_k,
             "aux_scale": aux_scale if aux_k else None,
             "l0": metrics["l0"], "l0_label": metrics["l0_label"],
             "normalized_mse": metrics["normalized_mse"], "dead_latents": metrics["dead_latents"],
             "dead_fraction": metrics["dead_fraction"], "n_hidden": metrics["n_hidden"],
             "lr": lr, "train_seconds": seconds, "status": estimator.history_["status"],
             "firing_fractions": [float(f) for f in metrics["firing_fractions"]]}
    point["outcome"] = outcome(point)
    if point["outcome"] != "ok":
        point["message"] = estimator.history_.get("message", "") if point["status"] != "done" else (
            f"normalized MSE {point['normalized_mse']:.3g} on the test images (above "
            f"{DIVERGED_NMSE:g}, or not finite): the run diverged; try a smaller --lr")
    print(f"{family} {name}={value:g}" + (f" aux_k={aux_k}" if aux_k else "")
          + (f" aux_scale={aux_scale:g}" if aux_k and aux_scale is not None else "")
          + f": {point['l0_label']} {point['l0']:.2f}, normalized MSE {point['normalized_mse']:.4f}, "
            f"dead {point['dead_latents']}/{point['n_hidden']}, {seconds:.1f} s"
          + ("" if point["outcome"] == "ok" else f"  DIVERGED ({point['message']})"),
          file=stream, flush=True)
    return point, estimator


def outcome(point):
    """"ok", or "diverged": training stopped on a non-finite cost, or the model's normalized
    MSE on the test images is not finite or above DIVERGED_NMSE."""
    nmse = point["normalized_mse"]
    if point["status"] not in ("done", "stopped") or not np.isfinite(nmse) or nmse > DIVERGED_NMSE:
        return "diverged"
    return "ok"


def drawable(points):
    """The points the log-log figures can show: trained ("ok"), with L0 > 0 and normalized MSE > 0."""
    return [p for p in points if p.get("outcome") == "ok" and p["l0"] > 0 and p["normalized_mse"] > 0]


def left_out_note(points):
    """One line naming the points not drawn and why ("" when every point is drawn)."""
    shown = {id(p) for p in drawable(points)}
    reasons = []
    for p in points:
        if id(p) in shown:
            continue
        why = (p["outcome"] if p.get("outcome") != "ok" else
               "L0 = 0: no latent fires" if p["l0"] <= 0 else "normalized MSE 0")
        reasons.append(f"{FAMILIES[p['family']][0].split(' (')[0]} {point_label(p)} ({why})")
    return "not drawn: " + "; ".join(reasons) if reasons else ""


# ---------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------


def point_label(point):
    value = f"{point['parameter']} = {point['value']:g}"
    if not point.get("aux_k"):
        return value
    weight = "" if point.get("aux_scale") is None else ", weight alpha alone: the earlier one"
    return value + f", AuxK (k_aux {point['aux_k']}{weight})"


def markdown_table(points):
    """The table of every point; a run that diverged or failed says so in place of its numbers."""
    lines = ["| family | setting | L0 (test) | normalized MSE (test) | dead latents | train s |",
             "|---|---|---|---|---|---|"]
    for p in points:
        if p.get("outcome", "ok") == "failed":
            lines.append(f"| {FAMILIES[p['family']][0]} | {point_label(p)} | FAILED: "
                         f"{p['message']} | | | {p['train_seconds']:.1f} |")
            continue
        l0 = f"{p['l0']:.2f}" + (" (a2 > 0.5)" if p["family"] in SIGMOID_FAMILIES else "")
        nmse = f"{p['normalized_mse']:.4g}" if p.get("outcome", "ok") != "ok" else f"{p['normalized_mse']:.4f}"
        if p.get("outcome", "ok") == "diverged":
            nmse += " (DIVERGED)"
        lines.append(f"| {FAMILIES[p['family']][0]} | {point_label(p)} | {l0} | "
                     f"{nmse} | {p['dead_latents']} of {p['n_hidden']} "
                     f"({100 * p['dead_fraction']:.1f}%) | {p['train_seconds']:.1f} |")
    return "\n".join(lines)


def save_frontier_figure(points, path, size_pixels=(1500, 600)):
    """Left: normalized MSE against L0 (log-log), one curve per family, sigmoid families hollow.
    Right: the dead fraction of every point against its L0, and TopK with and without AuxK.
    Only ``drawable`` points are drawn; a line at the bottom names the others and why."""
    from saelab.figures.plots import new_figure, save_figure

    note = left_out_note(points)
    points = drawable(points)
    figure = new_figure(size_pixels)
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.35, 1]})
    plain = [p for p in points if not p.get("aux_k")]
    aux = [p for p in points if p.get("aux_k")]
    for family, (label, _, _, _) in FAMILIES.items():
        ps = sorted((p for p in plain if p["family"] == family), key=lambda p: p["l0"])
        if not ps:
            continue
        hollow = family in SIGMOID_FAMILIES
        style = dict(color=COLORS[family], marker=MARKERS[family], markersize=8,
                     markerfacecolor="white" if hollow else COLORS[family])
        shown = label + (" [L0: a2 > 0.5]" if hollow else "")
        left.plot([p["l0"] for p in ps], [p["normalized_mse"] for p in ps], "-", label=shown, **style)
        for p in ps:
            left.annotate(f"{p['value']:g}", (p["l0"], p["normalized_mse"]), textcoords="offset points",
                          xytext=(5, 4), fontsize=8, color=COLORS[family])
        right.plot([p["l0"] for p in ps], [100 * p["dead_fraction"] for p in ps], "-", label=shown,
                   **style)
    for p in aux:
        earlier = p.get("aux_scale") is not None
        style = dict(color="gray" if earlier else "black", marker="*", markersize=13, linestyle="none")
        label = f"TopK k = {p['value']:g} + AuxK" + (" (earlier weight)" if earlier else "")
        left.plot([p["l0"]], [p["normalized_mse"]], label=label, **style)
        right.plot([p["l0"]], [100 * p["dead_fraction"]], label=label, **style)
    title = "Dead latents per point"
    for p in aux:
        twin = [q for q in plain if q["family"] == "topk" and q["value"] == p["value"]]
        if twin and p.get("aux_scale") is None:
            title += (f"\nTopK k = {p['value']:g}: {100 * twin[0]['dead_fraction']:.1f}% dead without "
                      f"AuxK, {100 * p['dead_fraction']:.1f}% with")
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel("L0: latents firing per test image (sigmoid families: a2 > 0.5)")
    left.set_ylabel("normalized MSE on the test images (1 - FVE)")
    left.set_title("Sparsity-reconstruction frontier, MNIST")
    left.grid(True, which="both", alpha=0.3)
    right.set_xscale("log")
    right.set_xlabel("L0 (as on the left)")
    right.set_ylabel("dead latents (%): never fire on the test images")
    right.set_title(title, fontsize=11)
    right.grid(True, which="both", alpha=0.3)
    if points:
        left.legend(fontsize=8)
        right.legend(fontsize=8, loc="upper right")
    figure.tight_layout(rect=(0, 0.04 if note else 0, 1, 1))
    if note:
        figure.text(0.01, 0.01, note[:220] + ("..." if len(note) > 220 else ""), fontsize=8,
                    color="darkred")
    return save_figure(figure, path)


def save_density_figure(points, path):
    """The feature-density histogram of every point, one panel per family (saelab/figures/density.py);
    the swept values light to dark, TopK with AuxK dashed (black: the paper's weight, gray: the earlier)."""
    from matplotlib import colormaps

    from saelab.figures.density import save_density_panels

    points = [p for p in points if p.get("outcome") == "ok"]       # trained: firing fractions
    panels = []
    for family, (label, _, _, _) in FAMILIES.items():
        plain = [p for p in points if p["family"] == family and not p.get("aux_k")]
        if not plain:
            continue
        colormap = colormaps[COLORMAPS[family]]
        curves = [(point_label(p) + f" (L0 {p['l0']:.1f})", p["firing_fractions"],
                   colormap(0.35 + 0.65 * i / max(len(plain) - 1, 1)))
                  for i, p in enumerate(plain)]
        curves += [(point_label(p), p["firing_fractions"],
                    "gray" if p.get("aux_scale") is not None else "black", "--")
                   for p in points if p["family"] == family and p.get("aux_k")]
        threshold = "a2 > 0.5" if family in SIGMOID_FAMILIES else "a2 > 0"
        panels.append((label, threshold, curves))
    return save_density_panels(panels, path)


def save_features_figure(panels, path, tile_shape=(28, 28)):
    """Filter grids side by side: panels is [(title, features (n, h*w))]."""
    from saelab.figures.plots import new_figure, save_figure, filter_grid

    figure = new_figure((520 * len(panels), 600))
    for i, (title, W) in enumerate(panels):
        axes = figure.add_subplot(1, len(panels), i + 1)
        axes.imshow(filter_grid(W, tile_shape), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
        axes.set_title(title, fontsize=10)
        axes.set_xticks([])
        axes.set_yticks([])
    figure.tight_layout()
    return save_figure(figure, path)


def write_text(path, text):
    with atomic_write(path) as handle:
        handle.write(text.encode())
    return path


# ---------------------------------------------------------------------------


def main(argv=None):
    wall_start = time.perf_counter()
    load_start = _load_average()
    args = parse_args(argv)
    sizes = settings(args)
    try:
        X_train, _ = mnist.load_mnist(args.data_dir, "train", n=sizes["examples"], dtype=args.dtype)
        X_test, _ = mnist.load_mnist(args.data_dir, "test", n=sizes["test_examples"], dtype=args.dtype)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_DATA
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    print(f"Frontier: {sizes['examples']} training images, {sizes['test_examples']} test images, "
          f"784 -> {sizes['hidden']}, Adam lr "
          + (f"{args.lr:g}" if args.lr is not None else "by family "
             + ", ".join(f"{f} {lr:g}" for f, lr in LEARNING_RATES.items()))
          + f", batch {args.batch_size}, "
          f"{sizes['epochs']} epochs, {args.dtype}, seed {args.seed}", flush=True)
    points, chosen = [], {}
    for family in args.families:
        for value in sweep(family, args.quick, sizes["hidden"]):
            point, estimator = run_point(family, value, X_train, X_test, sizes, args)
            points.append(point)
            if point["outcome"] == "ok":
                chosen.setdefault(family, []).append((point, estimator))
    if "topk" in args.families:
        k = min(AUX_K_AT if not args.quick else sweep("topk", True, sizes["hidden"])[0],
                sizes["hidden"])
        aux_k = min(AUX_K, max(1, sizes["hidden"] // 2))
        for aux_scale in AUX_SCALES:
            point, _ = run_point("topk", k, X_train, X_test, sizes, args, aux_k=aux_k,
                                 aux_scale=aux_scale)
            points.append(point)

    table = markdown_table(points)
    failures, paths = [], {}
    outputs = [("figure", out_dir / "frontier.png", lambda path: save_frontier_figure(points, path)),
               ("table", out_dir / "frontier_table.md", lambda path: write_text(path, table + "\n"))]
    if any(p["outcome"] == "ok" for p in points):          # a histogram needs a trained model
        outputs.insert(1, ("density", out_dir / "frontier_density.png",
                           lambda path: save_density_figure(points, path)))
    panels = feature_panels(chosen)
    if panels:
        outputs.insert(1, ("features", out_dir / "frontier_features.png",
                           lambda path: save_features_figure(panels, path)))
    for what, path, write in outputs:          # each output on its own: one failure loses no other
        try:
            paths[what] = write(path)
        except (OSError, ValueError, RuntimeError) as exc:
            failures.append(f"error: {what} {path}: {type(exc).__name__}: {exc}")
    wall = time.perf_counter() - wall_start
    results = {"settings": {**sizes, "batch_size": args.batch_size, "lr": args.lr, "dtype": args.dtype,
                            "seed": args.seed, "quick": args.quick},
               "points": points, "wall_seconds": wall,
               "load_average": {"start": load_start, "end": _load_average()}}
    try:
        paths["results"] = write_text(out_dir / "frontier_results.json",
                                      json.dumps(results, indent=1, allow_nan=True) + "\n")
    except (OSError, ValueError) as exc:
        failures.append(f"error: results {out_dir / 'frontier_results.json'}: {exc}")
    print(table)
    print(f"wall time {wall:.1f} s (1-minute load average {load_start} at the start, "
          f"{results['load_average']['end']} at the end); wrote "
          + ", ".join(str(p) for p in paths.values()), flush=True)
    bad = [p for p in points if p["outcome"] != "ok"]
    for line in failures:
        print(line, file=sys.stderr)
    if bad:
        print(f"error: {len(bad)} of {len(points)} runs diverged or failed: "
              + "; ".join(f"{p['family']} {point_label(p)}: {p['outcome']}" for p in bad),
              file=sys.stderr)
    if failures:
        return EXIT_OUTPUT_FAILED
    return EXIT_RUN_FAILED if bad else EXIT_OK


def _load_average():
    """The 1-minute load average (other programs' share of the cores shows in the wall time)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def feature_panels(chosen):
    """[(title, features)]: the notes' filters (KL-sigmoid), then one ReLU + L1 and one TopK model.

    KL-sigmoid at rho = 0.1 (the notes' MNIST setting) and TopK at k = 16 when
    they were trained (else their first point); ReLU + L1 at the point whose
    L0 is nearest TopK's.
    """
    panels, picked = [], {}
    for family in ("kl_sigmoid", "topk", "relu_l1"):
        runs = chosen.get(family)
        if not runs:
            continue
        want = FEATURE_CHOICE[family]
        if want is None and "topk" in picked:
            target = picked["topk"]["l0"]
            point, estimator = min(runs, key=lambda r: abs(np.log(r[0]["l0"] + 1e-9) - np.log(target)))
        else:
            point, estimator = next((r for r in runs if r[0]["value"] == want), runs[0])
        picked[family] = point
        what = "rows of W1" if family in SIGMOID_FAMILIES else "decoder columns W2[:, j]"
        title = (f"{FAMILIES[family][0]}, {point_label(point)}\n{what}; "
                 f"{point['l0_label']} {point['l0']:.1f}, nMSE {point['normalized_mse']:.3f}")
        panels.append((family, title, features(family, estimator)))
    order = {"kl_sigmoid": 0, "relu_l1": 1, "topk": 2}
    return [(title, W) for family, title, W in sorted(panels, key=lambda p: order[p[0]])]


if __name__ == "__main__":
    sys.exit(main())
