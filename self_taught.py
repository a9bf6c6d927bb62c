"""Self-taught learning on MNIST: UFLDL's Self-Taught Learning exercise by default.

    python self_taught.py --data-dir ../shared/data/mnist

The exercise (UFLDL, stlExercise.m), with its settings as defaults:

1. Unlabeled data: the MNIST training images of digits 5-9 (29,404 images),
   pixels / 255 in [0, 1]. A sparse autoencoder learns features from them:
   784 -> 200, KL penalty with rho 0.1 and beta 3, weight decay lambda 3e-3,
   sigmoid decoder, L-BFGS for 400 iterations.
2. Labeled data: the MNIST training images of digits 0-4 (30,596 images), in
   file order, split in half: the first round(n/2) are the training set, the
   rest the test set (``ufldl_split``).
3. Features: a2 = f(W1 x + b1) of each labeled image (200 values).
4. Softmax regression (lambda 1e-4, L-BFGS 400 iterations) is trained on the
   features of the training half, and, for comparison, on its raw pixels.
   Both are evaluated on the test half (UFLDL's number: 98.3% with features)
   and on the official MNIST test images of digits 0-4 (5,139 images).

Writes to --out-dir (default runs/self_taught): what ``train_mnist.py``
writes for the autoencoder (self_taught_model.npz, filters, training curve,
rho_hat histogram, reconstructions of digits 0-4 it never saw,
self_taught_summary.txt), then the two softmax classifiers added to
self_taught_model.npz as extra arrays (``softmax_features_W``, ...), the
results table in self_taught_results.txt and the figure
self_taught_accuracy.png (accuracy of features vs raw pixels, confusion
matrix of the feature classifier on the test half).

Softmax has a bias by default (see saelab/softmax.py); --no-softmax-bias gives
UFLDL's exact bias-free model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from saelab import experiment
from saelab.checks import memory
from saelab.data import mnist
from saelab.files.atomic import atomic_write
from saelab.softmax import accuracy, confusion_matrix, predict, train_softmax

LABELED_DIGITS = (0, 1, 2, 3, 4)
UNLABELED_DIGITS = (5, 6, 7, 8, 9)
NAME = "self_taught"
REPRESENTATIONS = ("features", "pixels")                # softmax on a2, softmax on x
EVALUATION_SETS = ("test_half", "official_test")


# ---------------------------------------------------------------------------
# The data split
# ---------------------------------------------------------------------------


def digit_indices(labels, digits, limit=None, *, name="limit"):
    """Indices (ascending, file order) of the labels that are in ``digits``; the first ``limit``.

    labels: (m,) integer labels. Raises ValueError, naming the argument
    ``name``, if ``limit`` asks for more than there are.
    """
    labels = np.asarray(labels)
    indices = np.flatnonzero(np.isin(labels, digits))
    if limit is not None:
        if limit > indices.size:
            raise ValueError(f"{name}: there are only {indices.size} images of digits "
                             f"{_digits_text(digits)}, got {limit}")
        indices = indices[:limit]
    return indices


def ufldl_split(labels, *, labeled_digits=LABELED_DIGITS, unlabeled_digits=UNLABELED_DIGITS,
                labeled_limit=None, unlabeled_limit=None):
    """UFLDL's split of the MNIST training labels: (unlabeled, train, test) index arrays.

    labels: (m,) integer labels of the training images. As stlExercise.m:

        labeledSet   = find(labels in 0..4)          (file order)
        unlabeledSet = find(labels in 5..9)
        numTrain = round(numel(labeledSet) / 2)      MATLAB rounds n/2 half up
        trainSet = labeledSet(1:numTrain), testSet = labeledSet(numTrain+1:end)

    labeled_limit / unlabeled_limit: keep only the first N of each set (in
    file order) before splitting, for quick runs; the labeled set needs at
    least 2 images so that both halves are non-empty. Returns three 1-D
    int arrays of row indices into ``labels``, disjoint, each ascending.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"labels: expected a 1-D array of integer labels, got {labels.dtype} "
                         f"{labels.shape}")
    if set(labeled_digits) & set(unlabeled_digits):
        raise ValueError(f"labeled_digits {tuple(labeled_digits)} and unlabeled_digits "
                         f"{tuple(unlabeled_digits)}: expected no digit in both")
    labeled = digit_indices(labels, labeled_digits, labeled_limit, name="labeled_limit")
    unlabeled = digit_indices(labels, unlabeled_digits, unlabeled_limit, name="unlabeled_limit")
    if labeled.size < 2:
        raise ValueError(f"labels: expected at least 2 images of digits {_digits_text(labeled_digits)} "
                         f"to split in half, got {labeled.size}")
    if unlabeled.size < 1:
        raise ValueError(f"labels: expected at least 1 image of digits "
                         f"{_digits_text(unlabeled_digits)}, got none")
    n_train = (labeled.size + 1) // 2                     # MATLAB's round(n / 2)
    return unlabeled, labeled[:n_train], labeled[n_train:]


def _digits_text(digits):
    digits = sorted(digits)
    if digits == list(range(digits[0], digits[-1] + 1)) and len(digits) > 2:
        return f"{digits[0]}-{digits[-1]}"
    return ", ".join(map(str, digits))


def class_of_digit(labels, digits=LABELED_DIGITS):
    """Softmax class of each label: its position in ``digits`` (digit 0 -> class 0, ...)."""
    lookup = np.full(10, -1, dtype=np.intp)
    lookup[list(digits)] = np.arange(len(digits))
    classes = lookup[labels]
    if (classes < 0).any():
        raise ValueError(f"labels: expected only digits {_digits_text(digits)}")
    return classes


def self_taught_data(X_train, y_train, X_test, y_test, *, labeled_limit=None,
                     unlabeled_limit=None, test_limit=None):
    """The exercise's data sets from MNIST's two splits, as a dict of arrays.

    X_train (60000, 784), y_train (60000,): MNIST's training split (pixels
    in [0, 1]); X_test, y_test: its test split. Returns
        unlabeled           (m_u, 784)  training images of digits 5-9
        train_X, train_y    (m_l, 784), (m_l,)  first half of digits 0-4
        test_X, test_y      the second half (UFLDL's test set)
        official_X, official_y   test-split images of digits 0-4
    with labels as softmax classes 0-4 (= the digits).
    """
    unlabeled, train, test = ufldl_split(y_train, labeled_limit=labeled_limit,
                                         unlabeled_limit=unlabeled_limit)
    official = digit_indices(y_test, LABELED_DIGITS, test_limit, name="test_limit")
    return {
        "unlabeled": X_train[unlabeled],
        "train_X": X_train[train], "train_y": class_of_digit(y_train[train]),
        "test_X": X_train[test], "test_y": class_of_digit(y_train[test]),
        "official_X": X_test[official], "official_y": class_of_digit(y_test[official]),
    }


# ---------------------------------------------------------------------------
# Classifiers on features and on pixels
# ---------------------------------------------------------------------------


def evaluate_representations(encode, data, *, lam=1e-4, max_iter=400, bias=True):
    """Train softmax on the features and on the pixels of data["train_X"]; evaluate both.

    encode: maps images (m, 784) to features (m, n_hidden) (the trained
    autoencoder's a2). data: as returned by ``self_taught_data``.
    Returns a dict, for each of REPRESENTATIONS: params (W, b), info (from
    ``train_softmax``), seconds (training time), accuracy (a dict over
    EVALUATION_SETS plus "train"), and predictions on the test half.
    """
    n_classes = len(LABELED_DIGITS)
    inputs = {
        "features": {split: encode(data[f"{split}_X"]) for split in ("train", "test", "official")},
        "pixels": {split: data[f"{split}_X"] for split in ("train", "test", "official")},
    }
    results = {}
    for representation in REPRESENTATIONS:
        X = inputs[representation]
        start = time.perf_counter()
        params, info = train_softmax(X["train"], data["train_y"], n_classes, lam=lam,
                                     max_iter=max_iter, bias=bias)
        seconds = time.perf_counter() - start
        test_prediction = predict(params, X["test"])
        results[representation] = {
            "params": params, "info": info, "seconds": seconds,
            "n_inputs": int(X["train"].shape[1]),
            "test_prediction": test_prediction,
            "accuracy": {
                "train": accuracy(data["train_y"], predict(params, X["train"])),
                "test_half": accuracy(data["test_y"], test_prediction),
                "official_test": accuracy(data["official_y"], predict(params, X["official"])),
            },
        }
    return results


def format_results(results, data, *, lam, max_iter, bias, wall_seconds=None):
    """The results table as printed and written to self_taught_results.txt."""
    features, pixels = results["features"], results["pixels"]
    sizes = {"test_half": data["test_y"].size, "official_test": data["official_y"].size,
             "train": data["train_y"].size}
    rows = (
        ("UFLDL test set (2nd half of train 0-4)", "test_half"),
        ("MNIST test set, digits 0-4", "official_test"),
        ("(training set: 1st half of train 0-4)", "train"),
    )
    head_f = f"learned features ({features['n_inputs']})"
    head_p = f"raw pixels ({pixels['n_inputs']})"
    lines = [
        f"Self-taught learning: softmax regression (lam {lam:g}, L-BFGS {max_iter} iterations, "
        f"{'with' if bias else 'no'} bias) on {data['train_y'].size} labeled images of digits 0-4; "
        f"features from the autoencoder trained on {data['unlabeled'].shape[0]} images of digits 5-9",
        f"  {'evaluation set':<40} {'images':>7}  {head_f:>22}  {head_p:>16}",
    ]
    for title, key in rows:
        lines.append(f"  {title:<40} {sizes[key]:>7}  {features['accuracy'][key]:>22.2%}  "
                     f"{pixels['accuracy'][key]:>16.2%}")
    for representation, result in results.items():
        info = result["info"]
        lines.append(f"  softmax on {representation}: {info['n_iter']} iterations, final J "
                     f"{info['cost']:.5g}, {result['seconds']:.1f} s ({info['message']})")
    if wall_seconds is not None:
        lines.append(f"  wall time: {wall_seconds:.1f} s in all")
    return "\n".join(lines)


def softmax_arrays(results):
    """The classifiers' params as extra arrays for the model file: softmax_features_W, ..."""
    return {f"softmax_{representation}_{name}": array
            for representation, result in results.items()
            for name, array in result["params"].items()}


# ---------------------------------------------------------------------------
# The script
# ---------------------------------------------------------------------------


def build_parser():
    parser = argparse.ArgumentParser(
        description="UFLDL's Self-Taught Learning exercise: a sparse autoencoder learns features "
                    "from MNIST digits 5-9; softmax regression on those features (and, for "
                    "comparison, on raw pixels) classifies digits 0-4.",
        epilog=experiment.EXIT_STATUS_HELP + " A failure in the softmax stage (after the "
               "autoencoder is saved) is reported the same way, with status 4.",
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", type=experiment.nonempty_path, default=Path("data/mnist"),
                      help="folder with the four MNIST IDX files (raw or .gz); missing files are "
                           "downloaded into it (default data/mnist)")
    data.add_argument("--unlabeled-limit", type=experiment.positive_int, default=None,
                      help="train the autoencoder on only the first N training images of digits "
                           "5-9, for quick runs (default: all 29404)")
    data.add_argument("--labeled-limit", type=experiment.positive_int, default=None,
                      help="use only the first N training images of digits 0-4 (at least 2), "
                           "split in half into train and test, for quick runs (default: all 30596)")
    data.add_argument("--test-limit", type=experiment.positive_int, default=None,
                      help="evaluate on only the first N official test images of digits 0-4 "
                           "(default: all 5139)")
    classifier = parser.add_argument_group("softmax regression")
    classifier.add_argument("--softmax-lam", type=experiment.nonnegative_float, default=1e-4,
                            help="weight decay lambda of softmax regression (default 0.0001)")
    classifier.add_argument("--softmax-iters", type=experiment.positive_int, default=400,
                            help="maximum number of L-BFGS iterations of softmax regression "
                                 "(default 400)")
    classifier.add_argument("--softmax-bias", action=argparse.BooleanOptionalAction, default=True,
                            help="give softmax a bias per class (never decayed); --no-softmax-bias "
                                 "is UFLDL's exact bias-free model (default: with bias)")
    experiment.add_training_arguments(parser, hidden=200, rho=0.1, lam=3e-3, iters=400,
                                      out_dir="runs/self_taught")
    return parser


def run(args, data, *, start_time=None, stream=None):
    """Train the autoencoder, then both classifiers; print, save and draw.

    args: parsed options of ``build_parser``; data: ``self_taught_data``.
    Returns (model, results, paths, exit status). When the autoencoder's
    training is stopped (Ctrl-C: status 130; a non-finite cost: 3), it is
    saved as usual by ``experiment.run`` and the classifiers are skipped
    (results None). A step that fails after training (an output of
    ``experiment.run``, the softmax stage, the accuracy figure, the results)
    is reported in one line on stderr, the other steps still run, and the
    status is 4 (``experiment.EXIT_OUTPUT_FAILED``).
    """
    from saelab.figures import plots  # matplotlib only when figures are written

    stream = sys.stdout if stream is None else stream
    start_time = time.perf_counter() if start_time is None else start_time
    print(f"Unlabeled: {data['unlabeled'].shape[0]} training images of digits 5-9; labeled: "
          f"{data['train_y'].size} + {data['test_y'].size} training images of digits 0-4 (first / "
          f"second half); official test images of digits 0-4: {data['official_y'].size}",
          file=stream)
    print("The autoencoder's 'test' numbers below are on the labeled training half (digits 0-4, "
          "never seen by the autoencoder).", file=stream, flush=True)
    info = {"data": f"MNIST training images of digits 5-9 ({data['unlabeled'].shape[0]}), "
                    f"pixels / 255"}
    model, summary, paths = experiment.run(args, data["unlabeled"], data["train_X"], name=NAME,
                                           tile_shape=(28, 28), info=info, start_time=start_time,
                                           stream=stream)
    status = experiment.exit_status(summary)
    if status in (experiment.EXIT_INTERRUPTED, experiment.EXIT_NONFINITE):
        # Ctrl-C or a non-finite cost: the autoencoder is saved
        print("Softmax stage skipped: the autoencoder did not finish training.", file=stream,
              flush=True)
        return model, None, paths, status

    # From here on a failure loses nothing already written: each step is tried on its own,
    # reported in one line on stderr, and the run ends with status 4 (EXIT_OUTPUT_FAILED).
    failures = []
    print(f"Training softmax regression on features and on pixels "
          f"({args.softmax_iters} iterations each)...", file=stream, flush=True)
    results = experiment.attempt(
        failures, "the softmax stage", None,
        lambda: evaluate_representations(model.encode, data, lam=args.softmax_lam,
                                         max_iter=args.softmax_iters, bias=args.softmax_bias))
    out_dir = Path(args.out_dir)
    if results is not None:
        def accuracy_figure(path):
            confusion = confusion_matrix(data["test_y"], results["features"]["test_prediction"],
                                         len(LABELED_DIGITS))
            accuracies = {
                f"UFLDL test set\n({data['test_y'].size} images)": _accuracy_pair(results, "test_half"),
                f"MNIST test set, 0-4\n({data['official_y'].size} images)":
                    _accuracy_pair(results, "official_test"),
            }
            return plots.save_self_taught_figure(accuracies, confusion, path,
                                                 class_names=LABELED_DIGITS)

        path = out_dir / f"{NAME}_accuracy.png"
        if experiment.attempt(failures, "the accuracy figure", path, lambda: accuracy_figure(path)):
            paths["accuracy"] = path
        softmax_info = {
            "labeled_digits": list(LABELED_DIGITS), "lam": args.softmax_lam,
            "max_iter": args.softmax_iters, "bias": args.softmax_bias,
            "m_train": int(data["train_y"].size),
            "accuracy": {rep: results[rep]["accuracy"] for rep in REPRESENTATIONS},
        }
        model_path = experiment.output_paths(out_dir, NAME)["model"]
        saved = experiment.attempt(
            failures, "the model with the softmax params", model_path,
            lambda: model.save(model_path, extra=softmax_arrays(results),
                               info={"tile_shape": [28, 28], **info, "softmax": softmax_info}) or True)
        text = experiment.attempt(
            failures, "the results", None,
            lambda: format_results(results, data, lam=args.softmax_lam, max_iter=args.softmax_iters,
                                   bias=args.softmax_bias,
                                   wall_seconds=time.perf_counter() - start_time))
        if text is not None:
            path = out_dir / f"{NAME}_results.txt"
            if experiment.attempt(failures, "the results", path, lambda: _write_text(text, path)):
                paths["results"] = path
            print(text, file=stream)
        written = [str(paths[key]) for key in ("accuracy", "results") if key in paths]
        print(f"  wrote:     {', '.join(written) or 'nothing'}"
              + (f"; softmax params added to {model_path}" if saved else ""), file=stream, flush=True)
    for failure in failures:
        print(experiment.failure_line(*failure), file=sys.stderr, flush=True)
    if failures:
        status = experiment.EXIT_OUTPUT_FAILED
    return model, results, paths, status


def _write_text(text, path):
    with atomic_write(path, mode="w") as handle:
        handle.write(text + "\n")
    return path


def _accuracy_pair(results, key):
    return {"learned features": results["features"]["accuracy"][key],
            "raw pixels": results["pixels"]["accuracy"][key]}


def main(argv=None):
    start_time = time.perf_counter()
    parser = build_parser()
    args = parser.parse_args(argv)
    memory.refuse_training_beyond_memory(parser, args, m=70_000, n_visible=784,   # MNIST at most
                                         data_option="--unlabeled-limit")
    experiment.check_options(parser, args, n_visible=784, name=NAME,
                             more_outputs=(f"{NAME}_accuracy.png", f"{NAME}_results.txt"))
    try:
        X_train, y_train = mnist.load_mnist(args.data_dir, "train", dtype=args.dtype)
        X_test, y_test = mnist.load_mnist(args.data_dir, "test", dtype=args.dtype)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for option, limit, labels, digits, split in (
            ("--unlabeled-limit", args.unlabeled_limit, y_train, UNLABELED_DIGITS, "training"),
            ("--labeled-limit", args.labeled_limit, y_train, LABELED_DIGITS, "training"),
            ("--test-limit", args.test_limit, y_test, LABELED_DIGITS, "test")):
        available = int(np.isin(labels, digits).sum())
        if limit is not None and limit > available:
            parser.error(f"{option}: the MNIST {split} split has {available} images of digits "
                         f"{_digits_text(digits)}, got {limit}")
    if args.labeled_limit == 1:
        parser.error("--labeled-limit: expected at least 2 images (one per half), got 1")
    try:
        data = self_taught_data(X_train, y_train, X_test, y_test, labeled_limit=args.labeled_limit,
                                unlabeled_limit=args.unlabeled_limit, test_limit=args.test_limit)
    except ValueError as exc:                             # e.g. a data set without digits 5-9
        print(f"error: {args.data_dir}: {exc}", file=sys.stderr)
        return 1
    del X_train, X_test                                   # keep only the subsets
    return run(args, data, start_time=start_time)[-1]


if __name__ == "__main__":
    experiment.run_script(main)
