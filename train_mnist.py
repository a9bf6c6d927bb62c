"""Train the sparse autoencoder on MNIST: UFLDL's Vectorization exercise by default.

    python train_mnist.py --data-dir ../shared/data/mnist

Defaults: the first 10,000 training images (pixels in [0, 1]), 784 -> 196,
KL penalty with rho 0.1 and beta 3, lambda 3e-3, sigmoid decoder, L-BFGS for
400 iterations, seed 0. The blog post's variant (L1 penalty, mini-batch
Adam):

    python train_mnist.py --penalty l1 --optimizer adam

Today's models instead (modern_sae.py, docs/modern_sae.md), trained by Adam:

    python train_mnist.py --model topk --k 16 --data-dir ../shared/data/mnist
    python train_mnist.py --model relu_l1 --l1 3 --data-dir ../shared/data/mnist

Writes to --out-dir: mnist_model.npz (load it with
``saelab.training.loading.load_autoencoder``), mnist_filters.png, mnist_training_curve.png,
mnist_rho_hat.png, mnist_reconstructions.png and mnist_summary.txt (with
--animate also mnist_training.gif, the filters emerging); prints
the summary (final cost and its parts, reconstruction MSE on the training
images and on the test images, mean rho_hat against rho, dead units, wall
time). With --model relu_l1 or topk the filters are the decoder columns,
mnist_density.png (the feature-density histogram on the test images) takes
the place of mnist_rho_hat.png, and the summary gives L0, normalized MSE
and dead latents.

Ctrl-C stops after the current step and saves the model and figures of the
parameters reached. Exit status: 0 done, 1 missing or bad data files, 2 bad
options, 3 the cost became NaN or infinite (the last finite parameters are
saved), 4 an output (a figure, the diagnostics, the summary) failed after
training (one line each on stderr; everything else is written), 130
interrupted by Ctrl-C (see saelab/experiment.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from saelab import experiment
from saelab.checks import memory
from saelab.data import mnist


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train a sparse autoencoder on MNIST digits (defaults: UFLDL's "
                    "Vectorization exercise, 784 -> 196, L-BFGS 400 iterations).",
        epilog=experiment.EXIT_STATUS_HELP,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", type=experiment.nonempty_path, default=Path("data/mnist"),
                      help="folder with the four MNIST IDX files (raw or .gz); missing files are "
                           "downloaded into it (default data/mnist)")
    data.add_argument("--examples", type=experiment.positive_int, default=10_000,
                      help="train on the first N training images, at most 60000 (default 10000)")
    data.add_argument("--test-examples", type=experiment.positive_int, default=10_000,
                      help="measure reconstruction error on the first N test images, at most "
                           "10000 (default 10000)")
    experiment.add_training_arguments(parser, hidden=196, rho=0.1, lam=3e-3, iters=400,
                                      out_dir="runs/mnist")
    experiment.add_model_arguments(parser)
    return parser


def parse_args(argv=None, parser=None):
    """Parse the options and refuse, through ``parser.error`` (exit 2, one line), every value
    the run would fail on later: sizes beyond MNIST or memory, and what ``experiment.check_options``
    refuses. Loads nothing. (benchmarks/bench.py --train checks its --train-args with it.)"""
    parser = build_parser() if parser is None else parser
    args = parser.parse_args(argv)
    experiment.check_model_options(parser, args, argv)
    for option, value, available in (("--examples", args.examples, 60_000),
                                     ("--test-examples", args.test_examples, 10_000)):
        if value > available:
            parser.error(f"{option}: MNIST has {available} images in that split, got {value}")
    memory.refuse_training_beyond_memory(parser, args, m=args.examples + args.test_examples,
                                         n_visible=784, data_option="--examples")
    experiment.check_options(parser, args, n_visible=784, name="mnist")
    return args


def main(argv=None):
    start_time = time.perf_counter()
    args = parse_args(argv)
    try:
        X_train, _ = mnist.load_mnist(args.data_dir, "train", n=args.examples, dtype=args.dtype)
        X_test, _ = mnist.load_mnist(args.data_dir, "test", n=args.test_examples, dtype=args.dtype)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    info = {"data": f"MNIST, first {args.examples} training images, pixels / 255"}
    _, summary, _ = experiment.run(args, X_train, X_test, name="mnist", tile_shape=(28, 28),
                                   value_range=(0.0, 1.0), info=info, start_time=start_time)
    return experiment.exit_status(summary)


if __name__ == "__main__":
    experiment.run_script(main)
