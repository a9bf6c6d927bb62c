"""Train the sparse autoencoder on image patches: the notes' edge detectors.

    python train_patches.py

Defaults: UFLDL's Sparse Autoencoder exercise, offline. Ten synthetic
512 x 512 images with natural-image statistics (dead leaves: opaque discs of
random grey with power-law sizes, occluding one another; not photographs;
saelab/data/dead_leaves.py), whitened with Olshausen and Field's filter at
their cutoff, 0.4 cycles per pixel; 10,000 random 8 x 8 patches normalized
to [0.1, 0.9] as in the exercise, 64 -> 25, KL penalty with rho 0.01 and
beta 3, lambda 1e-4, sigmoid decoder, L-BFGS for 400 iterations, seed 0.

    python train_patches.py --preset notes             # the notes' figure: 10 x 10 -> 100
    python train_patches.py --decoder linear --zca     # linear decoder on ZCA-whitened patches
    python train_patches.py --images olshausen         # Olshausen's IMAGES.mat (downloaded once)
    python train_patches.py --images portrait          # the photograph inside matplotlib
    python train_patches.py --images a.jpg b.png       # your own photographs

A second sample of patches (--test-patches, default 10,000) is drawn from
the same images with the same generator after the training patches, and
prepared with what was fitted on the training patches (the clipping limit,
or the ZCA matrix); the summary reports the reconstruction error on it. It
is not independent data: it overlaps the training patches' images. The
last line of the summary measures how localized the filters are
(saelab/localization.py; docs/patches.md).

Writes to --out-dir (default runs/patches), under a name that says which
variant ran: patches, then _portrait or _olshausen for those images, then
_notes for --preset notes, then _zca (e.g. patches_portrait_notes):
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

from saelab import experiment, localization  # noqa: E402
from saelab.checks import memory  # noqa: E402
from saelab.data import dead_leaves, olshausen, patches  # noqa: E402
from saelab.files.atomic import atomic_write  # noqa: E402

# --images: the named sources; anything else is a list of image files.
DEAD_LEAVES, PORTRAIT, OLSHAUSEN, FILES = "dead-leaves", "portrait", "olshausen", "files"
NAMED_SOURCES = (DEAD_LEAVES, OLSHAUSEN, PORTRAIT)
# Whitening cutoff f0 in cycles per pixel: Olshausen and Field's 0.4 for the dead leaves,
# which have no noise; 0.2 for photographs, whose highest frequencies are mostly JPEG noise.
DEFAULT_CUTOFF = {DEAD_LEAVES: 0.4, PORTRAIT: 0.2, FILES: 0.2}
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
        description="Train a sparse autoencoder on image patches (defaults: UFLDL's Sparse "
                    "Autoencoder exercise on synthetic images with natural-image statistics, "
                    "10,000 whitened 8 x 8 patches, 64 -> 25, L-BFGS 400 iterations) and draw "
                    "the learned edge detectors.",
        epilog="Runs NumPy with one OpenBLAS thread unless OPENBLAS_NUM_THREADS or "
               "OMP_NUM_THREADS is set (see the README). " + experiment.EXIT_STATUS_HELP,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--images", nargs="+", metavar="NAME_OR_FILE",
                      help="the images to take patches from: dead-leaves (the default: 10 "
                           "synthetic 512 x 512 images with natural-image statistics, opaque discs "
                           "of random grey with power-law sizes, drawn offline with seed 0; not "
                           "photographs), olshausen (Olshausen's 10 whitened natural scenes, the "
                           "notes' data: IMAGES.mat, downloaded into --data-dir the first time; "
                           "already whitened, so not whitened again), portrait (the photograph "
                           "grace_hopper.jpg that ships inside matplotlib), or PNG/JPEG files, "
                           "made grey (write ./portrait for a file of that name)")
    data.add_argument("--data-dir", type=experiment.nonempty_path, default=None, metavar="DIR",
                      help="with --images olshausen: the folder of IMAGES.mat, where it is "
                           f"downloaded if missing (default {olshausen.DEFAULT_DIR})")
    data.add_argument("--patches", type=experiment.positive_int, default=10_000,
                      help="number of random training patches (default 10000)")
    data.add_argument("--test-patches", type=experiment.nonnegative_int, default=10_000,
                      help="a second random sample of patches for the summary's test error, "
                           "0 for none (default 10000)")
    data.add_argument("--size", type=experiment.positive_int, default=8,
                      help="patch side in pixels, at least 2 and at most the images' side: "
                           "patches are SIZE x SIZE, n_visible = SIZE^2 (default 8)")
    data.add_argument("--cutoff", type=experiment.positive_float, default=None,
                      help="cutoff f0 of Olshausen and Field's whitening filter "
                           "|f| exp(-(|f|/f0)^4), in cycles per pixel (default "
                           f"{DEFAULT_CUTOFF[DEAD_LEAVES]}, theirs, for the dead-leaves images; "
                           f"{DEFAULT_CUTOFF[PORTRAIT]} for photographs, where 0.4 keeps JPEG "
                           "compression noise; refused with --images olshausen, already whitened)")
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
    through ``parser.error`` (status 2, one line on stderr). Sets
    ``args.source`` (dead-leaves, olshausen, portrait or files); ``args.images``
    becomes the list of file paths for files, None for a named source.
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
    args.source, args.images = image_source(parser, args.images)
    check_combinations(parser, args)
    check_size(parser, args)
    memory.refuse_training_beyond_memory(parser, args, m=args.patches + args.test_patches,
                                         n_visible=args.size * args.size, data_option="--patches")
    experiment.check_options(parser, args, n_visible=args.size * args.size, name=run_name(args))
    if args.cutoff is None:
        args.cutoff = DEFAULT_CUTOFF.get(args.source)
    if args.source == OLSHAUSEN and args.data_dir is None:
        args.data_dir = olshausen.DEFAULT_DIR
    if args.zca_epsilon is None:
        args.zca_epsilon = DEFAULT_ZCA_EPSILON
    return args


def image_source(parser, images):
    """(source, file paths or None) of the --images values: a named source alone, or files."""
    if images is None:
        return DEAD_LEAVES, None
    named = [name for name in images if name in NAMED_SOURCES]
    if named and len(images) > 1:
        parser.error(f"--images: {named[0]} names a set of images and stands alone; give it "
                     f"without files (write ./{named[0]} for a file of that name)")
    if named:
        return named[0], None
    return FILES, [Path(name) for name in images]


def image_shapes(args):
    """[(height, width), ...] of the images --images names, known without loading them.

    Files are read from their header only; a file that cannot be read is
    left out (loading it reports the error, exit status 1).
    """
    if args.source == DEAD_LEAVES:
        return [(dead_leaves.DEFAULT_SIZE, dead_leaves.DEFAULT_SIZE)]
    if args.source == OLSHAUSEN:
        return [(olshausen.IMAGE_SIDE, olshausen.IMAGE_SIDE)]
    paths = [patches.default_image_path()] if args.source == PORTRAIT else args.images
    shapes = []
    for path in paths:
        try:
            shapes.append(patches.image_shape(path))
        except (OSError, ValueError):
            pass
    return shapes


def check_size(parser, args):
    """``parser.error`` for a --size that no patch of these images can have."""
    if args.size < 2:
        parser.error(f"--size: expected at least 2, got {args.size}: each patch's own mean is "
                     f"removed, which leaves a 1 x 1 patch 0 whatever the image")
    shapes = image_shapes(args)
    if shapes:
        height, width = min(shapes, key=min)
        if args.size > min(height, width):
            what = {DEAD_LEAVES: "the dead-leaves images", OLSHAUSEN: "Olshausen's images",
                    PORTRAIT: "the portrait"}.get(args.source, "the smallest image")
            parser.error(f"--size: {args.size} x {args.size} patches do not fit in {what} "
                         f"({height} x {width} pixels); use --size {min(height, width)} or less")


def check_combinations(parser, args):
    """``parser.error`` for options that contradict each other."""
    if args.source == OLSHAUSEN and args.zca:
        parser.error("--images olshausen with --zca: Olshausen's images are already whitened, "
                     "and ZCA would whiten them again; drop --zca")
    if args.source == OLSHAUSEN and args.cutoff is not None:
        parser.error("--images olshausen with --cutoff: Olshausen's images are already whitened "
                     "(at 0.4 cycles per pixel) and are not whitened again; drop --cutoff")
    if args.data_dir is not None and args.source != OLSHAUSEN:
        parser.error("--data-dir without --images olshausen: the folder is where IMAGES.mat is "
                     "kept; add --images olshausen")
    if args.data_dir is not None and Path(args.data_dir).exists() and not Path(args.data_dir).is_dir():
        parser.error(f"--data-dir: {args.data_dir} is a file, expected the folder of "
                     f"{olshausen.FILE_NAME}")
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
    """Output name of the variant: patches, then _portrait or _olshausen, _notes, _zca.

    The dead-leaves images and your own files give plain "patches"
    (patches, patches_notes, patches_zca, patches_notes_zca).
    """
    source = {PORTRAIT: "_portrait", OLSHAUSEN: "_olshausen"}.get(getattr(args, "source", None), "")
    return ("patches" + source + ("_" + args.preset if args.preset else "")
            + ("_zca" if args.zca else ""))


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


def whitens_images(args):
    """Whether the images go through Olshausen and Field's filter.

    Not with --zca (ZCA whitens the patches instead), --no-whiten, or
    Olshausen's images (already whitened).
    """
    return not (args.zca or args.no_whiten or args.source == OLSHAUSEN)


def load_data(args):
    """The images --images names: (images, what they are, info for the model file).

    images: a list of 2-D float64 arrays (grey in [0, 1], except Olshausen's,
    whitened). Raises OSError or ValueError with a one-line message.
    """
    if args.source == DEAD_LEAVES:
        images = dead_leaves.dead_leaves_images()
        info = {"source": DEAD_LEAVES, "count": dead_leaves.DEFAULT_COUNT,
                "size": dead_leaves.DEFAULT_SIZE, "seed": dead_leaves.DEFAULT_SEED,
                "r_min": dead_leaves.R_MIN, "r_max": dead_leaves.R_MAX}
        what = (f"{len(images)} synthetic images with natural-image statistics (dead leaves: opaque "
                f"discs of random grey, radii {dead_leaves.R_MIN:g} to {dead_leaves.R_MAX:g} pixels "
                f"from p(r) ~ 1/r^3, seed {dead_leaves.DEFAULT_SEED}; not photographs), "
                f"{images[0].shape[0]} x {images[0].shape[1]} pixels")
        return images, what, info
    if args.source == OLSHAUSEN:
        images, sha256 = olshausen.load_olshausen(args.data_dir)
        path = Path(args.data_dir) / olshausen.FILE_NAME
        info = {"source": OLSHAUSEN, "path": str(path), "sha256": sha256, "already_whitened": True}
        what = (f"Olshausen's {len(images)} natural scenes, {images[0].shape[0]} x "
                f"{images[0].shape[1]} pixels ({path}, SHA-256 {sha256})")
        return images, what, info
    if args.source == PORTRAIT:
        images = patches.load_images()
        info = {"source": PORTRAIT, "file": patches.DEFAULT_IMAGE}
        what = (f"1 photograph, the portrait {patches.DEFAULT_IMAGE} that ships inside matplotlib, "
                f"{images[0].shape[0]} x {images[0].shape[1]} pixels")
        return images, what, info
    images = patches.load_images(args.images)
    names = [str(p) for p in args.images]
    shapes = ", ".join(f"{n}, {im.shape[0]} x {im.shape[1]}" for n, im in zip(names, images))
    count = "1 image" if len(images) == 1 else f"{len(images)} images"
    return images, f"{count} ({shapes} pixels)", {"source": FILES, "files": names}


def prepare_data(args, images):
    """Sample, fit the preprocessing on the training patches, apply it to both samples.

    images: 2-D arrays from ``load_data`` (grey in [0, 1], or Olshausen's, whitened). Returns
    (X_train (patches, size^2), X_test (test_patches, size^2) or None,
    extra arrays for the model file, info dict for the model file).
    """
    if whitens_images(args):
        images = patches.whiten_images(images, cutoff=args.cutoff, variance=WHITENED_VARIANCE)
    rng = np.random.default_rng(args.seed)
    train_raw = patches.sample_patches(images, args.patches, args.size, rng)   # (patches, size^2)
    test_raw = (patches.sample_patches(images, args.test_patches, args.size, rng)
                if args.test_patches else None)
    info = {"patch_size": args.size, "images": None, "image_whitening": None, "preprocessing": None}
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
    taken from the kind of images ``model.info_["images"]`` names, whitened
    first with ``patches.whiten_images(images, cutoff)`` when
    ``model.info_["image_whitening"]`` is not None (its cutoff); Olshausen's
    images are taken as they are. Returns the
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


def describe_data(args, what, X_train, X_test):
    """One line on where the patches came from (``what``, from ``load_data``) and how they were prepared."""
    if whitens_images(args):
        whitening = f"whitened (Olshausen-Field, cutoff {args.cutoff:g} cycles/pixel)"
    elif args.source == OLSHAUSEN:
        whitening = "already whitened by Olshausen, not whitened again"
    else:
        whitening = "not whitened"
    if args.zca:
        prep = f"each patch's mean removed, ZCA-whitened (epsilon {args.zca_epsilon:g})"
    else:
        prep = "normalized to [0.1, 0.9] (per-patch mean removed, clipped at 3 std)"
    test = f" + {X_test.shape[0]} test" if X_test is not None else ""
    return (f"Data: {what}, {whitening}; {X_train.shape[0]} training{test} patches of "
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


def localization_line(W, size):
    """The summary's line on how localized the filters W (n_hidden, size^2) are (saelab/localization.py)."""
    spread = localization.filter_spread(W, (size, size))
    defined = spread[np.isfinite(spread)]
    if defined.size == 0:
        return "  localization:     not defined: every filter is constant"
    q1, median, q3 = np.quantile(defined, [0.25, 0.5, 0.75])
    flat = f", {spread.size - defined.size} constant left out" if defined.size < spread.size else ""
    return (f"  localization:     median spread {median:.3f} of the tile (quartiles {q1:.3f}-{q3:.3f}"
            f"{flat}); 1 = spread over the whole tile like a grating (docs/patches.md)")


def report_localization(model, args, extra, paths, status):
    """Add the localization line to the summary file and print it; returns the exit status.

    It is printed only after a run that ended normally (status 0): otherwise
    ``experiment.run``'s last line, which says how the run ended and with
    what exit status, stays the last line. An error here is one line on
    stderr and exit status 4, like any output of ``experiment.run`` that
    failed after training.
    """
    summary_path = paths.get("summary")
    try:
        W = model.params_["W1"]
        if args.zca:
            W = filters_on_pixels(extra["zca_matrix"])(W)
        line = localization_line(W, args.size)
        if status == experiment.EXIT_OK:
            print(line, flush=True)
        if summary_path is not None:
            text = Path(summary_path).read_text()
            with atomic_write(summary_path, mode="w") as handle:
                handle.write(text + line + "\n")
    except (OSError, ValueError) as exc:
        print(experiment.failure_line("the localization line", summary_path, exc),
              file=sys.stderr, flush=True)
        return status if status == experiment.EXIT_INTERRUPTED else experiment.EXIT_OUTPUT_FAILED
    return status


def main(argv=None):
    start_time = time.perf_counter()
    args = parse_args(argv)
    try:
        images, what, images_info = load_data(args)
        X_train, X_test, extra, info = prepare_data(args, images)
    except (OSError, ValueError) as exc:
        prefix = "--images olshausen: " if args.source == OLSHAUSEN else ""
        print("error: " + prefix + " ".join(str(exc).split()), file=sys.stderr)
        return 1
    info["images"] = images_info
    line = describe_data(args, what, X_train, X_test)
    print(line, flush=True)
    info["data"] = line[len("Data: "):]
    filters = None
    if args.zca:
        info["filters_figure"] = "W1 @ zca_matrix (filters on pixels)"
        filters = filters_on_pixels(extra["zca_matrix"])
    model, summary, paths = experiment.run(args, X_train, X_test, name=run_name(args),
                                           tile_shape=(args.size, args.size), value_range=None,
                                           extra=extra, info=info, filters=filters, unit="patches",
                                           start_time=start_time)
    return report_localization(model, args, extra, paths, experiment.exit_status(summary))


if __name__ == "__main__":
    experiment.run_script(main)
