"""The flow shared by the training scripts (train_mnist.py, train_patches.py, ...).

    add_training_arguments(parser, **defaults)   the model/optimizer/output options
    add_model_arguments(parser)                  --model {kl,l1,relu_l1,topk}, --k, --aux-k, --l1
                                                 (train_mnist.py); check_model_options refuses
                                                 what does not go with the chosen model
    model_from_args(args)                        a SparseAutoencoder (or, with --model relu_l1 /
                                                 topk, a ModernAutoencoder) from those options
    summarize(model, X_train, X_test)            final cost parts + diagnostics on both sets
    format_summary(summary)                      the printed summary
    write_outputs(model, ...)                    model .npz + the four figures (+ summary text)
    run(args, X_train, X_test, name=..., tile_shape=...)   all of the above, in order
                                                 (+ NAME_training.gif with --animate)
    check_options(parser, args, n_visible=..., name=...)   parser.error for what the model
                                                 would refuse (--rho, --beta, --lam) and output
                                                 names that are folders
    exit_status(summary)                         0, 3 (cost became NaN/inf), 4 (an output could
                                                 not be written) or 130 (Ctrl-C)
    run_script(main)                             sys.exit(main()), Ctrl-C outside run -> 130

A script loads its own data, then calls ``run``; only the data, the names,
the tile shape of the figures (and, for preprocessed data, the filters to
draw and the arrays saved with the model) differ between scripts. The
skeleton:

    def main(argv=None):
        args = build_parser().parse_args(argv)
        X_train, X_test = ...                    # errors: print one line, return 1
        model, summary, paths = experiment.run(args, X_train, X_test, name=..., tile_shape=...)
        return experiment.exit_status(summary)

    if __name__ == "__main__":
        experiment.run_script(main)

Ctrl-C: ``run`` catches the first Ctrl-C (SIGINT) during training and
stops after the current step; it then summarizes, saves the model and
figures of the parameters reached, says where, and ``exit_status`` gives
130. A Ctrl-C during the summary or the saving is deferred the same way (the
files are finished). A second Ctrl-C quits at once with status 130 (``run``
raises SystemExit(130)); every file is written to a temporary file and
renamed, so none is left half-written. ``run_script`` turns a Ctrl-C outside
``run`` (while loading data, say) into one line and status 130.

A late failure loses nothing: after training, the model is saved first,
then each other output (the diagnostics of the summary, each figure, the
animation, the summary text) is written on its own; one that fails is
reported in one line on stderr (``error: the rho_hat histogram PATH was not
written: ...``), the others are still written, and the run exits 4.

Exit statuses of the training scripts: 0 done; 1 bad data or files (one
line on stderr); 2 bad command-line options (argparse); 3 training stopped
because the cost became NaN or infinite (the last finite parameters are
saved); 4 trained, but an output could not be written or computed (one line
each on stderr; the model and every other output are written); 130
interrupted by Ctrl-C (the parameters reached are saved). When several
apply: 130, then 4, then 3.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


from saelab.checks.argtypes import (  # noqa: F401  (scripts use them as experiment.*)
    nonempty_path, nonnegative_float, nonnegative_int, open_unit_float, positive_float, positive_int)
import sparse_autoencoder as sae
from saelab.files.atomic import atomic_write
from saelab.diagnostics import diagnostics
from saelab.training.autoencoder import SparseAutoencoder
from saelab.training.common import StopOnInterrupt
from saelab.training.modern import ModernAutoencoder

# Sparsity weight used when --beta is not given, per penalty. KL: the notes'
# 3. L1: beta * sum_j rho_hat_j penalizes every unit at every activation
# level, so it needs a far smaller weight than KL's 3 (which would switch
# every unit off). Of the two values tried on MNIST with Adam (lr 1e-3, 10
# epochs), 0.1 kept 179 of 196 units active on some image and 0.3 only 68.
DEFAULT_BETA = {"kl": 3.0, "l1": 0.1, "none": 0.0}
N_RECONSTRUCTIONS = 10

EXIT_OK = 0
EXIT_NONFINITE = 3            # the cost became NaN or infinite; the last finite params were saved
EXIT_OUTPUT_FAILED = 4        # trained and saved, but an output (figure, summary, ...) failed
EXIT_INTERRUPTED = 130        # Ctrl-C (128 + SIGINT, the shell's convention)
EXIT_STATUS_HELP = (
    "Exit status: 0 done; 1 missing or bad data files; 2 bad options; 3 the cost became NaN or "
    "infinite (the last finite parameters are saved); 4 trained, but an output (a figure, the "
    "diagnostics, the summary) could not be written or computed: one line each on stderr, "
    "the model and every other output are written; 130 interrupted by Ctrl-C (the parameters "
    "reached are saved). When several apply: 130, then 4, then 3."
)


# ---------------------------------------------------------------------------
# Command-line options
# ---------------------------------------------------------------------------


def output_dir(text):
    """An --out-dir: a folder that exists or can be created, and can be written to.

    Checked when the options are parsed, so that a bad folder is refused
    before a long run rather than after it. Creates nothing. Refused: an
    empty text (it would write into the current folder unasked), a NUL
    character, a name longer than the file system allows, a file on the
    way, a folder that cannot be written to.
    """
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a folder name, got {text!r}")
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"a path cannot hold a NUL character, got {text!r}")
    path = Path(text)
    limit = _name_max(path)
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            raise argparse.ArgumentTypeError(
                f"the name {part[:40]!r}... is longer than the {limit} bytes a file name may have")
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise argparse.ArgumentTypeError(f"{existing} is a file, expected a folder (got {text!r})")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot write in {existing}: permission denied (got {text!r})")
    return path


def _name_max(path):
    """The longest file name (bytes) the file system of path's nearest existing folder allows."""
    existing = path.absolute()
    while existing != existing.parent:
        try:
            if existing.exists():
                break
        except OSError:                         # e.g. the name itself is too long
            pass
        existing = existing.parent
    try:
        return os.pathconf(existing, "PC_NAME_MAX")
    except (AttributeError, ValueError, OSError):
        return 255


MODEL_CHOICES = ("kl", "l1", "relu_l1", "topk")
MODERN_MODELS = ("relu_l1", "topk")
DEFAULT_L1 = 1.0                # ReLU + L1's l1 when --l1 is not given
# The options of the notes' model alone: refused (when given) with --model relu_l1 or topk.
NOTES_ONLY = (("penalty", "--penalty"), ("rho", "--rho"), ("beta", "--beta"), ("decoder", "--decoder"),
              ("iters", "--iters"), ("animate", "--animate"), ("animate_every", "--animate-every"))


def add_model_arguments(parser):
    """--model {kl,l1,relu_l1,topk} with --k, --aux-k and --l1 (train_mnist.py).

    kl and l1 are the notes' model with that penalty (--penalty kl / l1);
    relu_l1 and topk today's models (modern_sae.py), trained by Adam with
    --lr, --batch-size, --epochs, --hidden, --lam (default 0 for them),
    --dtype, --seed. ``check_model_options`` refuses the rest.
    """
    group = parser.add_argument_group("today's models (docs/modern_sae.md)")
    group.add_argument("--model", choices=MODEL_CHOICES, default=None,
                       help="kl, l1: the notes' sigmoid model with that penalty (same as --penalty); "
                            "relu_l1: Anthropic's ReLU + L1 (April 2024 recipe); topk: Gao et al.'s "
                            "TopK. relu_l1 and topk train with Adam (--lr, --batch-size, --epochs) "
                            "and draw the decoder columns as the filters (default: the notes' model, "
                            "--penalty)")
    group.add_argument("--k", type=positive_int, default=None,
                       help="--model topk: latents kept per example (required)")
    group.add_argument("--aux-k", type=positive_int, default=None,
                       help="--model topk: AuxK's k_aux, dead latents used per example "
                            "(default: no AuxK)")
    group.add_argument("--l1", type=nonnegative_float, default=None,
                       help=f"--model relu_l1: the L1 weight l1 (default {DEFAULT_L1:g})")
    return parser


def is_modern(args):
    """Whether the options ask for ReLU + L1 or TopK (``add_model_arguments``' --model)."""
    return getattr(args, "model", None) in MODERN_MODELS


def check_model_options(parser, args, argv=None):
    """``parser.error`` (exit 2, one line) for options that do not go with --model; then
    settles the options the model implies (in args): --penalty for kl / l1; Adam and, unless
    --lam was given, lam 0 for relu_l1 / topk.

    argv: the arguments parsed (None: sys.argv[1:]), to tell the options given from defaults.
    """
    unset = object()
    given = {key for key, value in vars(parser.parse_args(
        argv, namespace=argparse.Namespace(**{key: unset for key in vars(args)}))).items()
        if value is not unset}
    model = args.model
    modern_options = {"k": "--k", "aux_k": "--aux-k", "l1": "--l1"}
    allowed = {"topk": ("k", "aux_k"), "relu_l1": ("l1",)}.get(model, ())
    for key, option in modern_options.items():
        if key in given and key not in allowed:
            wanted = "topk" if key in ("k", "aux_k") else "relu_l1"
            parser.error(f"{option}: an option of --model {wanted}, not of "
                         f"{'--model ' + model if model else 'the notes model'}")
    if model in ("kl", "l1"):
        if "penalty" in given and args.penalty != model:
            parser.error(f"--penalty: --model {model} is the notes' model with the {model} penalty, "
                         f"got --penalty {args.penalty}")
        args.penalty = model
    if model not in MODERN_MODELS:
        return args
    for key, option in NOTES_ONLY:
        if key in given:
            parser.error(f"{option}: an option of the notes' model, not of --model {model}")
    if "optimizer" in given and args.optimizer != "adam":
        parser.error(f"--optimizer: --model {model} is trained with Adam, got --optimizer {args.optimizer}")
    args.optimizer = "adam"
    if "lam" not in given:
        args.lam = 0.0
    if model == "topk":
        if args.k is None:
            parser.error("--k: --model topk needs k, the number of latents kept per example")
        for option, value in (("--k", args.k), ("--aux-k", args.aux_k)):
            if value is not None and value > args.hidden:
                parser.error(f"{option}: expected at most --hidden {args.hidden} latents, got {value}")
    return args


def check_options(parser, args, *, n_visible, name, more_outputs=()):
    """``parser.error`` (exit 2, one line) for option values the run would fail on later.

    Checked after parsing, since they depend on several options:

    - ``--rho`` below the smallest normal number of ``--dtype`` (the model
      refuses it: float32 ~1.18e-38, float64 ~2.2e-308);
    - ``--lam`` and ``--beta`` so large that ``validation.check_magnitudes``
      refuses them: the weight decay of the initial weights (drawn exactly
      as ``SparseAutoencoder.fit`` will draw them, n_visible -> --hidden,
      --seed, --dtype) or the sparsity penalty's gradient would overflow
      the dtype (e.g. --beta 1e36 or --lam 1e37 with --dtype float32);
    - an output of ``run`` (NAME_model.npz, ..., NAME_training.gif) or one
      of ``more_outputs`` (file names) that exists in --out-dir as a folder:
      it could not be replaced after training.
    """
    import numpy as np

    from saelab.checks import validation

    if is_modern(args):
        return _check_outputs(parser, args, name, more_outputs)
    dtype = np.dtype(args.dtype)
    tiny = float(np.finfo(dtype).tiny)
    if args.rho < tiny:
        parser.error(f"--rho: expected at least {tiny!r} (the smallest normal {dtype} number, "
                     f"--dtype {dtype}), got {args.rho!r}")
    beta = DEFAULT_BETA[args.penalty] if args.beta is None else args.beta
    params = sae.init_params(n_visible, args.hidden, rng=np.random.default_rng(args.seed),
                             dtype=dtype)
    try:
        validation.check_magnitudes(params, 1, 0.0, penalty=args.penalty, beta=beta,
                                    lam=args.lam, decoder=args.decoder)
    except ValueError as exc:
        name, _, rest = str(exc).partition(": ")
        if name in ("lam", "beta"):
            parser.error(f"--{name}: {rest} (initial weights {n_visible} -> {args.hidden}, "
                         f"--dtype {dtype})")
    _check_outputs(parser, args, name, more_outputs)


def _check_outputs(parser, args, name, more_outputs):
    outputs = [*output_paths(args.out_dir, name, modern=is_modern(args)).values(),
               animation_path(args.out_dir, name),
               *(Path(args.out_dir) / output for output in more_outputs)]
    for path in outputs:
        if path.is_dir():
            parser.error(f"--out-dir: {path} is a folder, but the run writes a file of that name")


def add_training_arguments(parser, *, hidden, rho, lam, beta=None, iters=400, penalty="kl",
                           decoder="sigmoid", optimizer="lbfgs", lr=1e-3, batch_size=128,
                           epochs=10, seed=0, dtype="float64", out_dir="runs",
                           seed_help="seed of the initialization and of Adam's shuffling"):
    """Add the options every training script shares, with the script's defaults.

    beta None: --beta defaults to DEFAULT_BETA of the chosen penalty.
    seed_help: what --seed seeds in this script.
    """
    model = parser.add_argument_group("model")
    model.add_argument("--hidden", type=positive_int, default=hidden,
                       help=f"number of hidden units n_hidden (default {hidden})")
    model.add_argument("--penalty", choices=sae.PENALTIES, default=penalty,
                       help="sparsity penalty: kl = beta * sum_j KL(rho || rho_hat_j) (the notes), "
                            "l1 = beta * mean_i sum_j a2_ij (the blog post), none "
                            f"(default {penalty})")
    model.add_argument("--rho", type=open_unit_float, default=rho,
                       help=f"target average activation rho of the KL penalty (default {rho})")
    beta_default = (f"{beta:g}" if beta is not None else
                    "by penalty: " + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_BETA.items()))
    model.add_argument("--beta", type=nonnegative_float, default=beta,
                       help=f"sparsity weight beta (default {beta_default})")
    model.add_argument("--lam", type=nonnegative_float, default=lam,
                       help=f"weight decay lambda (default {lam:g})")
    model.add_argument("--decoder", choices=sae.DECODERS, default=decoder,
                       help=f"output layer: sigmoid a3 = f(z3) or linear a3 = z3 (default {decoder})")
    model.add_argument("--dtype", choices=("float64", "float32"), default=dtype,
                       help=f"dtype of the parameters and of the whole computation (default {dtype})")
    model.add_argument("--seed", type=nonnegative_int, default=seed,
                       help=f"{seed_help} (default {seed})")
    opt = parser.add_argument_group("optimizer")
    opt.add_argument("--optimizer", choices=("lbfgs", "adam"), default=optimizer,
                     help=f"full-batch L-BFGS (the notes) or mini-batch Adam (the blog post) "
                          f"(default {optimizer})")
    opt.add_argument("--iters", type=positive_int, default=iters,
                     help=f"L-BFGS: maximum number of iterations (default {iters})")
    opt.add_argument("--lr", type=positive_float, default=lr,
                     help=f"Adam: learning rate (default {lr:g})")
    opt.add_argument("--batch-size", type=positive_int, default=batch_size,
                     help=f"Adam: examples per mini-batch (default {batch_size})")
    opt.add_argument("--epochs", type=positive_int, default=epochs,
                     help=f"Adam: passes over the training examples (default {epochs})")
    out = parser.add_argument_group("output")
    out.add_argument("--out-dir", type=output_dir, default=Path(out_dir),
                     help=f"folder for the saved model and the figures (default {out_dir})")
    out.add_argument("--quiet", action="store_true",
                     help="no progress lines while training (the summary is still printed)")
    out.add_argument("--animate", action="store_true",
                     help="also write NAME_training.gif: the filters and the cost curve every few "
                          "steps, about 60 frames (recorded while training, drawn after it)")
    out.add_argument("--animate-every", type=positive_int, default=None, metavar="N",
                     help="with --animate: a frame every N L-BFGS iterations or Adam steps "
                          "(implies --animate; default: max(1, steps // 60))")
    return parser


def animates(args):
    """Whether the options ask for the training animation (--animate or --animate-every)."""
    return bool(getattr(args, "animate", False) or getattr(args, "animate_every", None))


def model_from_args(args):
    """A SparseAutoencoder configured by the options of ``add_training_arguments``; with
    ``add_model_arguments``' --model relu_l1 or topk, a ModernAutoencoder (Adam, its recipe)."""
    if is_modern(args):
        settings = ({"k": args.k, "aux_k": args.aux_k} if args.model == "topk"
                    else {"l1": DEFAULT_L1 if args.l1 is None else args.l1})
        return ModernAutoencoder(args.hidden, model=args.model, lam=args.lam, lr=args.lr,
                                 batch_size=args.batch_size, epochs=args.epochs, seed=args.seed,
                                 dtype=args.dtype, **settings)
    beta = DEFAULT_BETA[args.penalty] if args.beta is None else args.beta
    return SparseAutoencoder(
        args.hidden, penalty=args.penalty, rho=args.rho, beta=beta, lam=args.lam,
        decoder=args.decoder, optimizer=args.optimizer, max_iter=args.iters, lr=args.lr,
        batch_size=args.batch_size, epochs=args.epochs, seed=args.seed, dtype=args.dtype,
    )


# ---------------------------------------------------------------------------
# Summary
# ---------------------------------------------------------------------------


def summarize(model, X_train, X_test=None, unit="images", failures=None):
    """Final cost parts on X_train, and ``diagnostics`` on X_train (and X_test).

    unit: what one example is, for the printed summary ("images", "patches").
    failures: None (errors raise), or a list: a part that cannot be computed
    is then None in the summary and (what, None, exception) is appended.
    A ModernAutoencoder: its metrics (L0, normalized MSE, dead latents, firing
    fractions) instead of the notes' diagnostics.
    """
    if isinstance(model, ModernAutoencoder):
        return _summarize_modern(model, X_train, X_test, unit, failures)
    target = model.rho if model.penalty == "kl" else None
    summary = {
        "unit": unit,
        "hyperparameters": model.hyperparameters(),
        "m_train": int(X_train.shape[0]),
        "cost_terms": attempt(failures, "the final cost J", None, lambda: model.cost_terms(X_train)),
        "train": attempt(failures, f"the diagnostics on the training {unit}", None,
                         lambda: diagnostics(model.params_, X_train, decoder=model.decoder,
                                             rho=target)),
        "test": None,
        "history": model.history_,
    }
    if X_test is not None:
        summary["test"] = attempt(failures, f"the diagnostics on the test {unit}", None,
                                  lambda: diagnostics(model.params_, X_test, decoder=model.decoder,
                                                      rho=target))
    return summary


def _summarize_modern(model, X_train, X_test, unit, failures):
    summary = {
        "unit": unit,
        "modern": True,
        "hyperparameters": model.hyperparameters(),
        "m_train": int(X_train.shape[0]),
        "cost_terms": attempt(failures, "the final cost J", None, lambda: model.cost_terms(X_train)),
        "train": attempt(failures, f"the metrics on the training {unit}", None,
                         lambda: model.metrics(X_train)),
        "test": None,
        "history": model.history_,
    }
    if X_test is not None:
        summary["test"] = attempt(failures, f"the metrics on the test {unit}", None,
                                  lambda: model.metrics(X_test))
    return summary


def attempt(failures, what, path, action):
    """``action()``; with a list ``failures``, an error is appended as (what, path, exception)
    and None returned instead (a late failure must not stop the other outputs).

    KeyboardInterrupt is not caught (``run`` handles Ctrl-C).
    """
    if failures is None:
        return action()
    try:
        return action()
    except Exception as exc:                # noqa: BLE001  (reported, never hidden)
        failures.append((what, path, exc))
        return None


def failure_line(what, path, exc):
    """One line on stderr for an output that failed after training."""
    reason = " ".join(f"{type(exc).__name__}: {exc}".split())
    if len(reason) > 300:
        reason = reason[:297] + "..."
    done = f"{path} was not written" if path is not None else "could not be computed"
    return f"error: {what}: {done}: {reason} (exit status {EXIT_OUTPUT_FAILED})"


def format_summary(summary):
    """The summary as printed at the end of a run (several lines)."""
    h, terms, train = summary["hyperparameters"], summary["cost_terms"], summary["train"]
    history = summary["history"]
    if summary.get("modern"):
        return _format_modern_summary(summary)
    lines = [
        f"Summary: {summary['m_train']} training examples, {h['n_visible']} -> {h['n_hidden']}, "
        f"{h['penalty']} penalty (beta {h['beta']:g}" + (f", rho {h['rho']:g}" if h["penalty"] == "kl" else "")
        + f"), lam {h['lam']:g}, {h['decoder']} decoder, {h['dtype']}, seed {h['seed']}",
    ]
    if history["optimizer"] == "lbfgs":
        done = f"L-BFGS, {history['iteration'][-1]} iterations ({history['n_evaluations']} evaluations)"
    else:
        done = (f"Adam, {history['epoch'][-1]} epochs of batch {h['batch_size']} at lr {h['lr']:g} "
                f"({len(history['step_cost'])} steps)")
    lines.append(f"  optimizer:        {done}: {history['message']}")
    if history["status"] != "done":
        lines.append(f"  NOTE: training ended early ({history['status']}); these are the last "
                     f"parameters reached")
    if history["optimizer"] == "adam" and len(history["cost"]) > 1 and history["cost"][-1] > history["cost"][0]:
        lines.append(f"  NOTE: J rose from {history['cost'][0]:.6g} to {history['cost'][-1]:.6g}: "
                     f"Adam diverged; try a smaller learning rate (--lr {h['lr'] / 10:g})")
    if terms is None:
        lines.append("  final cost J:     not computed (the error is on stderr)")
    else:
        lines.append(
            f"  final cost J:     {terms['cost']:.6g} = reconstruction {terms['reconstruction']:.6g}"
            f" + weight decay {terms['weight_decay']:.6g} + sparsity {terms['sparsity']:.6g}"
        )
    lines += _diagnostics_lines(summary)
    if "train_seconds" in summary:
        drawing = (f"{summary['animation_seconds']:.1f} s drawing the animation, "
                   if "animation_seconds" in summary else "")
        lines.append(f"  wall time:        {summary['train_seconds']:.1f} s training, "
                     f"{drawing}{summary['wall_seconds']:.1f} s in all")
    return "\n".join(lines)


def _format_modern_summary(summary):
    """format_summary for ReLU + L1 and TopK: the settings, J as trained, L0 / normalized MSE /
    dead latents on the training and test examples."""
    h, terms, history = summary["hyperparameters"], summary["cost_terms"], summary["history"]
    if h["model"] == "topk":
        what = f"TopK (Gao et al. 2024), k {h['k']}"
        if h["aux_k"] is not None:
            weight = "relative to the data's variance" if h["aux_scale"] is None else f"times {h['aux_scale']:g}"
            what += f", AuxK k_aux {h['aux_k']} alpha {h['alpha']:g} ({weight})"
    else:
        what = (f"ReLU + L1 (Anthropic, April 2024), l1 {h['l1']:g}, l1 warm-up {h['l1_warmup']:g} "
                f"and lr decay {h['lr_decay']:g} of the steps, gradient clipped at "
                f"{h['clip_grad_norm']}, inputs scaled by {history.get('input_scale', 1.0):.4g}")
    lines = [f"Summary: {summary['m_train']} training examples, {h['n_visible']} -> {h['n_hidden']}, "
             f"{what}, lam {h['lam']:g}, {h['dtype']}, seed {h['seed']}",
             f"  optimizer:        Adam, {history['epoch'][-1]} epochs of batch {h['batch_size']} at lr "
             f"{h['lr']:g} ({len(history['step_cost'])} steps): {history['message']}"]
    if history["status"] != "done":
        lines.append(f"  NOTE: training ended early ({history['status']}); these are the last "
                     f"parameters reached")
    if terms is None:
        lines.append("  final cost J:     not computed (the error is on stderr)")
    else:
        scaled = " (on the scaled inputs, as trained)" if history.get("input_scale", 1.0) != 1.0 else ""
        lines.append(f"  final cost J:     {terms['cost']:.6g} = reconstruction {terms['reconstruction']:.6g}"
                     f" + sparsity {terms['sparsity']:.6g} + weight decay {terms['weight_decay']:.6g}"
                     f"{scaled}")
    unit = summary.get("unit", "images")
    for part in ("train", "test"):
        metrics = summary[part]
        if metrics is None:
            if part == "train":
                lines.append("  metrics:          not computed (the error is on stderr)")
            continue
        lines.append(f"  {part + ':':<17} L0 {metrics['l0']:.2f}, normalized MSE "
                     f"{metrics['normalized_mse']:.4f}, dead latents {metrics['dead_latents']} of "
                     f"{metrics['n_hidden']} (never fire on the {metrics['m']} {part} {unit})")
    if "train_seconds" in summary:
        lines.append(f"  wall time:        {summary['train_seconds']:.1f} s training, "
                     f"{summary['wall_seconds']:.1f} s in all")
    return "\n".join(lines)


def _diagnostics_lines(summary):
    """The summary's lines from the diagnostics (one line saying so if they failed)."""
    train, test = summary["train"], summary["test"]
    if train is None:
        return ["  diagnostics:      not computed (the error is on stderr)"]
    lines = []
    mse = f"train {train['reconstruction_mse']:.5g} (FVE {train['fve']:.4f})"
    if test is not None:
        mse += (f", test {test['reconstruction_mse']:.5g} (FVE {test['fve']:.4f}, {test['m']} "
                f"{summary.get('unit', 'images')})")
    lines.append(f"  reconstruction MSE per input: {mse}")
    rho_line = f"  mean rho_hat:     {train['rho_hat_mean']:.4g}"
    if train["rho"] is not None:
        deviation = (train["rho_hat_mean"] - train["rho"]) / train["rho"]
        rho_line += f" vs rho {train['rho']:g} ({deviation:+.1%})"
    rho_line += (f"; spread std {train['rho_hat_std']:.3g}, min {train['rho_hat_min']:.3g}, "
                 f"max {train['rho_hat_max']:.3g}")
    lines.append(rho_line)
    lines.append(f"  dead units:       {train['dead_units']} of {train['n_hidden']} never above 0.5 on "
                 f"the training examples; always on (never below 0.5): {train['always_on_units']}")
    lines.append(f"  active units:     {train['mean_active_units']:.2f} per training example on average")
    return lines


# ---------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------


def output_paths(out_dir, name, modern=False):
    """Where ``write_outputs`` puts the model, the four figures and the summary.

    modern (ReLU + L1, TopK): the feature-density histogram NAME_density.png
    takes the place of the rho_hat histogram.
    """
    out_dir = Path(out_dir)
    paths = {
        "model": out_dir / f"{name}_model.npz",
        "filters": out_dir / f"{name}_filters.png",
        "training_curve": out_dir / f"{name}_training_curve.png",
        "rho_hat": out_dir / f"{name}_rho_hat.png",
        "reconstructions": out_dir / f"{name}_reconstructions.png",
        "summary": out_dir / f"{name}_summary.txt",
    }
    if modern:
        del paths["rho_hat"]
        paths = {**{key: paths[key] for key in ("model", "filters", "training_curve")},
                 "density": out_dir / f"{name}_density.png",
                 **{key: paths[key] for key in ("reconstructions", "summary")}}
    return paths


def animation_path(out_dir, name):
    """Where ``run`` writes the training animation (--animate)."""
    return Path(out_dir) / f"{name}_training.gif"


def write_outputs(model, summary, out_dir, name, *, tile_shape, X_examples,
                  value_range=(0.0, 1.0), extra=None, info=None, filters=None, failures=None):
    """Save the model (.npz) and the four figures; returns their paths.

    X_examples: (k, n_visible) examples shown with their reconstructions.
    tile_shape: (h, w) of one filter / example. value_range: pixel range of
    the examples, or None to scale each one on its own. extra: arrays saved
    with the model (e.g. a whitening matrix). info: JSON-compatible dict
    saved with the hyperparameters (data description, ...); the tile shape
    is added to it. filters: (n_hidden, h*w) rows drawn as the filter grid,
    default W1 (for whitened inputs, W1 @ W_zca shows the filters in pixel
    space), or a function of W1 giving them.

    failures: None (the first error raises), or a list: each output is then
    written on its own, the model first; one that fails is left out of the
    returned paths and (what, path, exception) is appended to the list.
    """
    from saelab.figures import plots  # matplotlib only when figures are written

    modern = isinstance(model, ModernAutoencoder)
    targets = output_paths(out_dir, name, modern=modern)
    del targets["summary"]
    info = {"tile_shape": list(tile_shape), **(info or {})}
    W1 = model.params_["W1"]
    if modern and filters is None:
        filters = model.params_["W2"].T                 # the decoder columns: each latent's feature

    def rho_hat_histogram(path):
        if summary["train"] is None:
            raise ValueError("it needs the diagnostics on the training examples, which failed")
        return plots.save_rho_hat_histogram(summary["train"]["rho_hat"], path, rho=summary["train"]["rho"])

    def density_histogram(path):
        from saelab.figures.density import save_density_histogram

        part = "test" if summary.get("test") is not None else "train"
        if summary[part] is None:
            raise ValueError("it needs the metrics on the examples, which failed")
        return save_density_histogram(summary[part]["firing_fractions"], path,
                                      title=f"Feature density of the {model.n_hidden} latents on the "
                                            f"{summary[part]['m']} {part} {summary.get('unit', 'images')}")

    writers = {
        "model": ("the model", lambda path: model.save(path, extra=extra, info=info)),
        "density": ("the feature-density histogram", density_histogram),
        "filters": ("the filters figure", lambda path: plots.save_filter_grid(
            W1 if filters is None else filters(W1) if callable(filters) else filters, path, tile_shape)),
        "training_curve": ("the training curve", lambda path: plots.save_training_curve(model.history_, path)),
        "rho_hat": ("the rho_hat histogram", rho_hat_histogram),
        "reconstructions": ("the reconstructions figure", lambda path: plots.save_reconstructions(
            X_examples, model.reconstruct(X_examples), path, tile_shape, value_range=value_range)),
    }
    paths = {}
    for key, path in targets.items():
        what, write = writers[key]
        if attempt(failures, what, path, lambda: write(path) or True):
            paths[key] = path
    return paths


def write_summary(text, path):
    """Write the summary text atomically; returns the path."""
    with atomic_write(path, mode="w") as handle:
        handle.write(text + "\n")
    return path


def run(args, X_train, X_test=None, *, name, tile_shape, value_range=(0.0, 1.0), extra=None,
        info=None, filters=None, unit="images", callback=None, start_time=None, stream=None):
    """Train on X_train, then summarize, save and draw; returns (model, summary, paths).

    args: parsed options of ``add_training_arguments``. X_test: optional
    held-out data for the summary (its first examples are also the ones
    shown reconstructed; else X_train's). filters: None (draw W1) or a
    function of W1 giving the (n_hidden, n_visible) rows to draw (applied
    to the trained W1 and to every frame of the animation). unit: the word
    for one example in the summary. callback: passed
    to the optimizer (return True to stop; the parameters reached are still
    saved). start_time: ``time.perf_counter()`` at the script's start, for the wall
    time (default: now).

    --animate (``animates(args)``): an ``animation.FilterRecorder`` records
    W1 every --animate-every steps (default ``animation.frame_interval``)
    during training; after the model and figures are saved, the frames
    recorded are drawn into NAME_training.gif (also after a Ctrl-C: the
    frames so far), written atomically like every other file.

    Ctrl-C: the first one stops training after the current step (see
    ``common.StopOnInterrupt``); the parameters reached are summarized and
    saved as usual, the last line printed says so and where, and
    ``summary["interrupted"]`` is True (``exit_status`` gives 130). A second
    Ctrl-C quits at once: ``run`` prints one line and raises SystemExit(130);
    files already written are complete, the one being written is discarded.
    A cost that became NaN or infinite stops training too: the last finite
    parameters are saved and the last line says so (``exit_status`` gives 3).
    """
    stream = sys.stdout if stream is None else stream
    start_time = time.perf_counter() if start_time is None else start_time
    model = model_from_args(args)
    recorder = None
    if animates(args):
        from saelab.figures import animation

        every = args.animate_every or animation.frame_interval(
            animation.total_steps(model, X_train.shape[0]))
        recorder = animation.FilterRecorder(every)
        callback = animation.chain_callbacks(recorder, callback)
    out_dir = Path(args.out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)        # fail now, not after training
    except OSError as exc:
        print(f"error: --out-dir {out_dir}: cannot create the folder ({exc})", file=sys.stderr)
        raise SystemExit(1) from None
    stage = "training"
    try:
        with StopOnInterrupt() as interrupt:
            if isinstance(model, ModernAutoencoder):
                what = {"topk": f"TopK k {model.k}", "relu_l1": f"ReLU + L1 l1 {model.l1:g}"}[model.model]
                print(f"Training {name}: {X_train.shape[0]} examples x {X_train.shape[1]} inputs -> "
                      f"{model.n_hidden} latents, adam, {what}", file=stream, flush=True)
            else:
                print(f"Training {name}: {X_train.shape[0]} examples x {X_train.shape[1]} inputs -> "
                      f"{model.n_hidden} hidden units, {model.optimizer}, {model.penalty} penalty",
                      file=stream, flush=True)
            train_start = time.perf_counter()
            model.fit(X_train, callback=interrupt.chain(callback),
                      progress=False if args.quiet else stream)
            train_seconds = time.perf_counter() - train_start
            if interrupt.requested and model.history_["status"] == "stopped":
                model.history_["message"] = "stopped by Ctrl-C"

            stage = "saving"
            failures = []              # (what, path, exception): each output is tried on its own
            summary = summarize(model, X_train, X_test, unit=unit, failures=failures)
            shown = (X_test if X_test is not None else X_train)[:N_RECONSTRUCTIONS]
            paths = write_outputs(model, summary, out_dir, name, tile_shape=tile_shape,
                                  X_examples=shown, value_range=value_range, extra=extra, info=info,
                                  filters=filters, failures=failures)
            if recorder is not None and len(recorder):
                drawing_start = time.perf_counter()
                gif = animation_path(out_dir, name)
                if attempt(failures, "the training animation", gif,
                           lambda: recorder.save_gif(gif, tile_shape, transform=filters)):
                    paths["animation"] = gif
                    summary["animation_seconds"] = time.perf_counter() - drawing_start
            summary["train_seconds"] = train_seconds
            summary["wall_seconds"] = time.perf_counter() - start_time
            summary["interrupted"] = interrupt.requested
            summary_path = output_paths(out_dir, name, modern=isinstance(model, ModernAutoencoder))["summary"]
            text = attempt(failures, "the summary", summary_path, lambda: format_summary(summary))
            if text is not None and attempt(failures, "the summary", summary_path,
                                            lambda: write_summary(text, summary_path)):
                paths["summary"] = summary_path
            summary["interrupted"] = interrupt.requested      # a Ctrl-C during that write counts too
            summary["failed_outputs"] = [failure_line(*failure) for failure in failures]
            if text is not None:
                print(text, file=stream)
            print("  wrote:            " + ", ".join(str(p) for p in paths.values()), file=stream)
            ending = ending_message(summary, paths)
            if ending:
                print(ending, file=stream)
            stream.flush()
            for line in summary["failed_outputs"]:
                print(line, file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        if stage == "training":
            message = "Ctrl-C again: quit without saving anything"
        else:
            message = (f"Ctrl-C again while saving: quit; the files already written in {out_dir} "
                       f"are complete and the one being written was discarded")
        print(f"\n{message} (exit status {EXIT_INTERRUPTED})", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    return model, summary, paths


def _steps_done(history):
    """'L-BFGS iteration 12' or 'Adam step 37 (epoch 1)': how far training got."""
    if history["optimizer"] == "lbfgs":
        return f"L-BFGS iteration {history['iteration'][-1]}"
    steps = len(history["step_cost"])
    epoch = max(1, -(-steps // history["steps_per_epoch"]))        # ceil
    return f"Adam step {steps} (epoch {epoch})"


def ending_message(summary, paths):
    """The last line of a run that did not finish normally (None if it did)."""
    history = summary["history"]
    status = exit_status(summary)
    if "model" in paths:
        where = f"saved in {paths['model']} (figures and summary beside it)"
    else:
        where = "not saved: the model file could not be written (see the error below)"
    if summary.get("interrupted"):
        return (f"Interrupted by Ctrl-C after {_steps_done(history)}: the model and figures of the "
                f"parameters reached are {where}. Exit status {status}.")
    if history["status"] == "nonfinite":
        return (f"Training stopped: {history['message']}. The last parameters with a finite cost "
                f"are {where}. Exit status {status}.")
    if summary.get("failed_outputs"):
        return (f"Trained, but {len(summary['failed_outputs'])} output(s) failed (the errors "
                f"below); everything else is written. Exit status {status}.")
    return None


def exit_status(summary):
    """The script's exit status for a ``run`` summary: 130 after Ctrl-C, 4 if an output could
    not be written or computed, 3 if the cost became NaN or infinite, else 0."""
    if summary.get("interrupted"):
        return EXIT_INTERRUPTED
    if summary.get("failed_outputs"):
        return EXIT_OUTPUT_FAILED
    if summary["history"]["status"] == "nonfinite":
        return EXIT_NONFINITE
    return EXIT_OK


def run_script(main, argv=None):
    """``sys.exit(main(argv))``; a Ctrl-C outside ``run`` (loading data, say) exits 130 with one line.

    ``run`` handles Ctrl-C during training and saving itself; this covers
    the rest of the script, where there is nothing to save.
    """
    try:
        status = main(argv)
    except KeyboardInterrupt:
        print(f"\nCtrl-C: stopped outside training; nothing more was saved "
              f"(exit status {EXIT_INTERRUPTED})", file=sys.stderr, flush=True)
        status = EXIT_INTERRUPTED
    sys.exit(status)
