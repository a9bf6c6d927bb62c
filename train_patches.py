"""Train the sparse autoencoder on natural-image patches: the notes' edge detectors.

    python train_patches.py

Defaults: UFLDL's Sparse Autoencoder exercise, offline. The photograph that
ships inside matplotlib (grace_hopper.jpg, made grey), whitened with
Olshausen and Field's filter at cutoff 0.2 cycles per pixel (their 0.4 keeps
this JPEG's compression noise), 10,000 random 8 x 8 patches normalized to
[0.1, 0.9] as in the exercise, 64 -> 25, KL penalty with rho 0.01 and
beta 3, lambda 1e-4, sigmoid decoder, L-BFGS for 400 iterations, seed 0.

    python train_patches.py --preset notes             # the notes' figure: 10 x 10 -> 100
    python train_patches.py --decoder linear --zca     # linear decoder on ZCA-whitened patches
    python train_patches.py --images a.jpg b.png       # your own photographs

A second sample of patches (--test-patches, default 10,000) is drawn from
the same images with the same generator after the training patches, and
prepared with what was fitted on the training patches (the clipping limit,
or the ZCA matrix); the summary reports the reconstruction error on it. It
is not independent data: it overlaps the training patches' images.

Writes to --out-dir (default runs/patches), under a name that says which
variant ran (patches, patches_notes, patches_zca, patches_notes_zca):
NAME_model.npz, NAME_filters.png, NAME_training_curve.png, NAME_rho_hat.png,
NAME_reconstructions.png and NAME_summary.txt (with --animate also
NAME_training.gif, the filters emerging; see saelab/figures/animation.py). The model file
keeps what is needed to prepare new patches the same way (``patch_inputs``).
"""

from __future__ import annotations

import os


def limit_blas_threads():
    """One OpenBLAS thread unless OPENBLAS_NUM_THREADS or OMP_NUM_THREADS says otherwise.

    The products here are small (10,000 x 64 by 64 x 25), and OpenBLAS's
    threads wait for each other: with two, a program that holds one core
    stalls every product. On an idle 2-core machine two threads are a little
    faster (a median 5.3 s against 6.6 s for the default run, README); set
    OPENBLAS_NUM_THREADS=2 to use two.
    Takes effect only before NumPy is first imported, so it runs only when
    this file is the script (importing the module changes nothing).
    """
    if "OPENBLAS_NUM_THREADS" not in os.environ and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OPENBLAS_NUM_THREADS"] = "1"


if __name__ == "__main__":
    limit_blas_threads()

import argparse  # noqa: E402  (after limit_blas_threads, which must precede NumPy)
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from saelab import experiment  # noqa: E402
from saelab.checks import memory  # noqa: E402
from saelab.data import patches  # noqa: E402

DEFAULT_CUTOFF = 0.2            # cycles per pixel (Olshausen and Field: 0.4)
DEFAULT_ZCA_EPSILON = 0.1       # UFLDL's linear decoders exercise
WHITENED_VARIANCE = 0.1         # Olshausen and Field's recipe

# --preset: the notes' own figure (Ng's CS294A notes, "Visualization").
PRESETS = {"notes": {"size": 10, "hidden": 100}}
# --zca: UFLDL's linear decoders exercise (rho, lam and beta of its KL penalty).
ZCA_DEFAULTS = {"decoder": "linear", "rho": 0.035, "lam": 3e-3}
ZCA_KL_BETA = 5.0


# ---------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------


def build_parser():
    parser = argparse.ArgumentParser(
        description="Train a sparse autoencoder on natural-image patches (defaults: UFLDL's "
                    "Sparse Autoencoder exercise, 10,000 whitened 8 x 8 patches, 64 -> 25, "
                    "L-BFGS 400 iterations) and draw the learned edge detectors.",
        epilog="Runs NumPy with one OpenBLAS thread unless OPENBLAS_NUM_THREADS or "
               "OMP_NUM_THREADS is set (see the README). " + experiment.EXIT_STATUS_HELP,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--images", type=Path, nargs="+", metavar="PATH",
                      help="PNG or JPEG files to take patches from, made grey (default: the "
                           "photograph grace_hopper.jpg that ships inside matplotlib)")
    data.add_argument("--patches", type=experiment.positive_int, default=10_000,
                      help="number of random training patches (default 10000)")
    data.add_argument("--test-patches", type=experiment.nonnegative_int, default=10_000,
                      help="a second random sample of patches for the summary's test error, "
                           "0 for none (default 10000)")
    data.add_argument("--size", type=experiment.positive_int, default=8,
                      help="patch side in pixels: patches are SIZE x SIZE, n_visible = SIZE^2 "
                           "(default 8)")
    data.add_argument("--cutoff", type=experiment.positive_float, default=None,
                      help="cutoff f0 of Olshausen and Field's whitening filter "
                           "|f| exp(-(|f|/f0)^4), in cycles per pixel (default "
                           f"{DEFAULT_CUTOFF}; their recipe's 0.4 keeps JPEG compression noise)")
    data.add_argument("--no-whiten", action="store_true",
                      help="do not whiten the images before taking patches")
    data.add_argument("--zca", action="store_true",
                      help="the linear-decoder variant (UFLDL's linear decoders exercise): raw "
                           "grey patches, each patch's mean removed, then ZCA-whitened (mean patch "
                           "removed) instead of whitening the images and squeezing into "
                           "[0.1, 0.9]; sets the defaults --decoder linear, --rho 0.035, "
                           "--lam 0.003 and (KL) --beta 5. The ZCA matrix and mean patch are "
                           "saved with the model")
    data.add_argument("--zca-epsilon", type=experiment.positive_float, default=None,
                      help="ZCA regularization epsilon > 0: W_zca = U diag(1/sqrt(S + epsilon)) U^T "
                           f"(default {DEFAULT_ZCA_EPSILON}; needs --zca; 0 is refused: with each "
                           "patch's mean removed the covariance is always singular)")
    data.add_argument("--preset", choices=sorted(PRESETS),
                      help="notes: the configuration of the notes' own figure, 10 x 10 patches "
                           "and 100 hidden units (--size and --hidden given explicitly still win)")
    experiment.add_training_arguments(parser, hidden=25, rho=0.01, lam=1e-4, iters=400,
                                      out_dir="runs/patches",
                                      seed_help="seed of the patch sampling, the initialization "
                                                "and Adam's shuffling")
    return parser


def parse_args(argv=None, parser=None):
    """Parse the options, apply --preset and --zca defaults, refuse what makes no sense.

    Precedence: an option given on the command line, then --preset, then
    --zca's defaults, then the exercise's defaults. Bad combinations exit
    through ``parser.error`` (status 2, one line on stderr).
    """
    parser = build_parser() if parser is None else parser
    args = parser.parse_args(argv)
    defaults = {}
    if args.zca:
        defaults.update(ZCA_DEFAULTS)
        if args.penalty == "kl":
            defaults["beta"] = ZCA_KL_BETA
    if args.preset is not None:
        defaults.update(PRESETS[args.preset])
    if defaults:
        parser.set_defaults(**defaults)
        args = parser.parse_args(argv)
    check_combinations(parser, args)
    memory.refuse_training_beyond_memory(parser, args, m=args.patches + args.test_patches,
                                         n_visible=args.size * args.size, data_option="--patches")
    experiment.check_options(parser, args, n_visible=args.size * args.size, name=run_name(args))
    if args.cutoff is None:
        args.cutoff = DEFAULT_CUTOFF
    if args.zca_epsilon is None:
        args.zca_epsilon = DEFAULT_ZCA_EPSILON
    return args


def check_combinations(parser, args):
    """``parser.error`` for options that contradict each other."""
    if args.zca and args.decoder == "sigmoid":
        parser.error("--zca with --decoder sigmoid: ZCA-whitened patches are not in [0, 1], "
                     "which a sigmoid decoder cannot reproduce; use --decoder linear")
    if args.zca and args.cutoff is not None:
        parser.error("--zca with --cutoff: with --zca the patches are ZCA-whitened and the "
                     "images are not whitened first; drop --cutoff")
    if args.no_whiten and args.cutoff is not None:
        parser.error("--no-whiten with --cutoff: the cutoff is a setting of the whitening "
                     "that --no-whiten skips; give one or the other")
    if args.zca_epsilon is not None and not args.zca:
        parser.error("--zca-epsilon without --zca: epsilon is a setting of ZCA whitening; "
                     "add --zca --decoder linear")


def run_name(args):
    """Output name of the variant: patches, patches_notes, patches_zca, patches_notes_zca."""
    return "patches" + ("_" + args.preset if args.preset else "") + ("_zca" if args.zca else "")


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def whitens_images(args):
    """Whether the images go through Olshausen and Field's filter (not with --zca)."""
    return not (args.zca or args.no_whiten)


def prepare_data(args, images):
    """Sample, fit the preprocessing on the training patches, apply it to both samples.

    images: 2-D grey arrays in [0, 1] (``patches.load_images``). Returns
    (X_train (patches, size^2), X_test (test_patches, size^2) or None,
    extra arrays for the model file, info dict for the model file).
    """
    if whitens_images(args):
        images = patches.whiten_images(images, cutoff=args.cutoff, variance=WHITENED_VARIANCE)
    rng = np.random.default_rng(args.seed)
    train_raw = patches.sample_patches(images, args.patches, args.size, rng)   # (patches, size^2)
    test_raw = (patches.sample_patches(images, args.test_patches, args.size, rng)
                if args.test_patches else None)
    info = {"patch_size": args.size, "image_whitening": None, "preprocessing": None}
    if whitens_images(args):
        info["image_whitening"] = {"filter": "Olshausen-Field |f| exp(-(|f|/f0)^4)",
                                   "cutoff": args.cutoff, "variance": WHITENED_VARIANCE}
    extra = {}
    if args.zca:
        mean_patch, W_zca = patches.fit_zca(patches.remove_patch_means(train_raw), args.zca_epsilon)
        extra = {"zca_mean_patch": mean_patch, "zca_matrix": W_zca}
        info["preprocessing"] = {"kind": "zca", "epsilon": args.zca_epsilon}
    else:
        info["preprocessing"] = {"kind": "sigmoid", "limit": patches.sigmoid_limit(train_raw)}
    prepare = _preprocessor(info["preprocessing"], extra)
    X_test = prepare(test_raw) if test_raw is not None else None
    return prepare(train_raw), X_test, extra, info


def _preprocessor(preprocessing, extra):
    if preprocessing["kind"] == "zca":
        return lambda raw: patches.apply_zca(patches.remove_patch_means(raw),
                                             extra["zca_mean_patch"], extra["zca_matrix"])
    return lambda raw: patches.normalize_for_sigmoid(raw, limit=preprocessing["limit"])


def patch_inputs(model, raw_patches):
    """New patches prepared exactly like a saved model's training patches.

    model: a ``train.SparseAutoencoder`` loaded from a file this script
    wrote. raw_patches: (k, size^2) rows from ``patches.sample_patches``,
    taken from grey images in [0, 1], whitened first with
    ``patches.whiten_images(images, cutoff)`` when
    ``model.info_["image_whitening"]`` is not None (its cutoff). Returns the
    (k, size^2) inputs ``model.encode`` expects: the ZCA variant removes
    each patch's mean, then applies ``zca_mean_patch`` and ``zca_matrix``
    from ``model.extra_``; the sigmoid variant normalizes to [0.1, 0.9] with
    the training patches' clipping limit.
    """
    preprocessing = (model.info_ or {}).get("preprocessing")
    if not isinstance(preprocessing, dict) or preprocessing.get("kind") not in ("zca", "sigmoid"):
        raise ValueError("model: no patch preprocessing saved with it; was it written by "
                         "train_patches.py?")
    if preprocessing["kind"] == "zca" and not {"zca_mean_patch", "zca_matrix"} <= set(model.extra_):
        raise ValueError("model: a ZCA model file without zca_mean_patch and zca_matrix")
    raw_patches = np.asarray(raw_patches, dtype=np.float64)
    n_visible = model.params_["W1"].shape[1]
    if raw_patches.ndim != 2 or raw_patches.shape[1] != n_visible:
        raise ValueError(f"raw_patches: expected shape (k, {n_visible}), got {raw_patches.shape}")
    return _preprocessor(preprocessing, model.extra_)(raw_patches)


def describe_data(args, images, X_train, X_test):
    """One line on where the patches came from and how they were prepared."""
    names = [str(p) for p in args.images] if args.images else [patches.DEFAULT_IMAGE + " (matplotlib)"]
    shapes = ", ".join(f"{n}, {im.shape[0]} x {im.shape[1]}" for n, im in zip(names, images))
    if whitens_images(args):
        whitening = f"whitened (Olshausen-Field, cutoff {args.cutoff:g} cycles/pixel)"
    else:
        whitening = "not whitened"
    if args.zca:
        prep = f"each patch's mean removed, ZCA-whitened (epsilon {args.zca_epsilon:g})"
    else:
        prep = "normalized to [0.1, 0.9] (per-patch mean removed, clipped at 3 std)"
    test = f" + {X_test.shape[0]} test" if X_test is not None else ""
    count = "1 image" if len(images) == 1 else f"{len(images)} images"
    return (f"Data: {count} ({shapes} pixels), {whitening}; {X_train.shape[0]} training{test} patches of "
            f"{args.size} x {args.size} pixels, {prep}")


def filters_on_pixels(W_zca):
    """For ``experiment.run``: a function of W1 giving W1 @ W_zca (the filters and the animation).

    Row j of W1 @ W_zca (n_hidden, n_visible) is unit j's filter on the
    (mean-removed) pixels: z2 = W1 (W_zca (x - mean)) + b1 = (W1 W_zca)(x - mean) + b1,
    W_zca being symmetric. UFLDL's linear decoders exercise displays the same.
    """
    def filters(W1):
        return W1 @ W_zca
    return filters


# ---------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------


def main(argv=None):
    start_time = time.perf_counter()
    args = parse_args(argv)
    try:
        images = patches.load_images(args.images)
        X_train, X_test, extra, info = prepare_data(args, images)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    line = describe_data(args, images, X_train, X_test)
    print(line, flush=True)
    info["data"] = line[len("Data: "):]
    filters = None
    if args.zca:
        info["filters_figure"] = "W1 @ zca_matrix (filters on pixels)"
        filters = filters_on_pixels(extra["zca_matrix"])
    _, summary, _ = experiment.run(args, X_train, X_test, name=run_name(args),
                                   tile_shape=(args.size, args.size), value_range=None, extra=extra,
                                   info=info, filters=filters, unit="patches", start_time=start_time)
    return experiment.exit_status(summary)


if __name__ == "__main__":
    experiment.run_script(main)
