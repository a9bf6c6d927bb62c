"""A stacked autoencoder classifies MNIST: UFLDL's "Building Deep Networks for Classification".

    python stacked_mnist.py --data-dir ../shared/data/mnist

The exercise (UFLDL, stackedAEExercise.m), with its settings as defaults:

1. Greedy layer-wise pretraining on the 60,000 MNIST training images
   (pixels / 255 in [0, 1]). Sparse autoencoder 1 learns 784 -> 200 (KL
   penalty with rho 0.1 and beta 3, weight decay lambda 3e-3, sigmoid
   decoder, L-BFGS for 400 iterations), trained with the project's
   ``SparseAutoencoder``; autoencoder 2 learns 200 -> 200 with the same
   settings from autoencoder 1's features a2. Softmax regression (lambda
   1e-4, L-BFGS up to 400 iterations, ``train_softmax``) learns the ten
   digits from autoencoder 2's features.
2. Fine-tuning: the two encoders and the softmax become one network
   (``stacked_autoencoder.stack_from_autoencoders``) and SciPy's L-BFGS-B
   minimizes its cost, cross-entropy + (1e-4 / 2) ||theta||^2
   (``stacked_autoencoder.cost_and_grad``, the readable code; the
   decoders are dropped), over all its weights at once, for at most 400
   iterations, as the exercise's solutions do with minFunc.
3. The stack is tested on the 10,000 MNIST test images before fine-tuning
   (UFLDL reports 87.7%) and after (97.6%). Nothing is chosen on the test
   images: the settings are UFLDL's. ``--holdout N`` keeps the last N
   training images out of all training and reports the accuracy on them,
   for comparing settings without looking at the test set. That is how
   the one choice made here was made: the computation is float32
   (``--dtype float64`` for float64), half the time, with the same
   held-out accuracy (docs/stacked.md, "The experiment"). The softmax has
   a bias per class, as everywhere in this project; ``--no-softmax-bias``
   gives UFLDL's bias-free model.

Writes to --out-dir (default runs/stacked): stacked_model.npz (the network;
``saelab.files.stacked_file.load_stacked``, then
``stacked_autoencoder.predict``), stacked_ae1.npz, stacked_ae2.npz (the
pretrained autoencoders; ``SparseAutoencoder.load``), the first layer's
filters before and after fine-tuning (stacked_filters_before.png,
stacked_filters_after.png), the confusion matrix on the test images after
fine-tuning (stacked_confusion.png), the accuracy before and after with
UFLDL's numbers marked (stacked_accuracy.png) and stacked_summary.txt
(settings, accuracies, wall time per stage).

Ctrl-C stops the stage in progress after its current step (the softmax
stage, seconds long, finishes first), skips the stages after it, and writes
the outputs of what was reached: the autoencoders trained so far, and the
network (fine-tuned as far as it got, else pretrained) once the softmax
exists. A second Ctrl-C quits at once. Exit statuses: those of
saelab/experiment.py (0 done, 1 bad data, 2 bad options, 3 a cost became
NaN or infinite, 4 an output failed, 130 Ctrl-C).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

import stacked_autoencoder as sa
from saelab import experiment
from saelab.checks import memory
from saelab.data import mnist
from saelab.files.atomic import atomic_write
from saelab.files.stacked_file import save_stacked
from saelab.softmax import accuracy, confusion_matrix, train_softmax
from saelab.training.autoencoder import SparseAutoencoder, single_threaded_scipy_blas
from saelab.training.common import QUIET, Progress, StopOnInterrupt, TrainingStep

NAME = "stacked"
N_CLASSES = 10
N_PIXELS = 784
TILE_SHAPE = (28, 28)
MNIST_SIZES = {"train": 60_000, "test": 10_000}
UFLDL_ACCURACY = {"before": 0.877, "after": 0.976}     # stackedAEExercise.m's comment
AUTOENCODER = {"penalty": "kl", "rho": 0.1, "beta": 3.0, "lam": 3e-3, "decoder": "sigmoid"}
SOFTMAX_LAM = 1e-4
FINETUNE_LAM = 1e-4                                    # on the softmax weights theta only
FULL = {"examples": MNIST_SIZES["train"], "test_examples": MNIST_SIZES["test"],
        "ae_iters": 400, "softmax_iters": 400, "finetune_iters": 400}
QUICK = {"examples": 500, "test_examples": 500, "ae_iters": 25, "softmax_iters": 50,
         "finetune_iters": 25}
STAGE_LABELS = {"before": "before fine-tuning", "after": "after fine-tuning"}


# ---------------------------------------------------------------------------
# Fine-tuning: L-BFGS over the packed network
# ---------------------------------------------------------------------------


class _StopRequested(Exception):
    """Raised inside SciPy's loop to leave it between iterations."""


def network_sizes(params):
    """([s_1, ..., s_L], n_classes, bias) of a stacked network's params."""
    sizes = [params["stack"][0]["W"].shape[1]] + [layer["W"].shape[0] for layer in params["stack"]]
    return sizes, params["softmax"]["W"].shape[0], "b" in params["softmax"]


def finetune(params, X, y, *, lam=FINETUNE_LAM, max_iter=400, callback=None, progress=None,
             progress_every=2.0):
    """Minimize ``stacked_autoencoder.cost_and_grad`` over every weight with SciPy's L-BFGS-B.

    params: the network to start from (not modified), float32 or float64:
        the dtype of the computation. X (m, s_1), y (m,) labels.
    lam: weight decay on the softmax weights. max_iter: L-BFGS iterations.
    callback: called as ``callback(TrainingStep)`` after each iteration;
        return True to stop (the params of that iteration are returned).
    progress: None or False (silent), True (stdout) or a file: a line at
        most every ``progress_every`` seconds (and at the first and last
        iteration) with J and its two parts, elapsed time and time left.

    L-BFGS-B works on the float64 vector theta = ``pack(params)``; each
    evaluation unpacks it into the params' dtype and calls the readable
    ``cost_and_grad``. Returns (params, history): new arrays, and a dict
    with "iteration" (0 = the start), "cost" (J at each), "elapsed",
    "status" ("done", "stopped" by the callback, or "nonfinite": the last
    parameters with a finite cost are returned), "message" and
    "n_evaluations".
    """
    from scipy.optimize import minimize  # scipy only where L-BFGS is used

    sa.pack(params)                                    # checks the structure, raises if bad
    sizes, n_classes, bias = network_sizes(params)
    dtype = params["stack"][0]["W"].dtype
    X = np.asarray(X).astype(dtype, copy=False)        # once, not per evaluation
    n_theta = params["softmax"]["W"].size              # pack puts the softmax weights first

    def as_params(theta):
        return sa.unpack(theta.astype(dtype), sizes, n_classes, bias)

    last = {"theta": None, "cost": None}
    n_evaluations = 0

    def fun(theta):
        nonlocal n_evaluations
        n_evaluations += 1
        if not np.isfinite(theta).all():
            raise FloatingPointError(f"the parameters became infinite or NaN at evaluation "
                                     f"{n_evaluations}")
        with np.errstate(**QUIET):
            cost, grads = sa.cost_and_grad(as_params(theta), X, y, lam=lam)
        grad = sa.pack(grads).astype(np.float64)
        if not (math.isfinite(cost) and np.isfinite(grad).all()):
            raise FloatingPointError(f"the cost or gradient became {cost} at evaluation "
                                     f"{n_evaluations}")
        last["theta"], last["cost"] = theta.copy(), cost
        return cost, grad

    def cost_at(theta):
        if last["theta"] is not None and np.array_equal(theta, last["theta"]):
            return last["cost"]                        # almost always: the point just evaluated
        with np.errstate(**QUIET):
            return sa.cost_and_grad(as_params(theta), X, y, lam=lam)[0]

    def terms(theta, cost):
        decay = 0.5 * lam * float(np.dot(theta[:n_theta], theta[:n_theta]))
        return {"cost": cost, "cross_entropy": cost - decay, "weight_decay": decay}

    theta0 = sa.pack(params).astype(np.float64)
    reporter = None
    if progress is not None and progress is not False:
        reporter = Progress(max_iter, "iter", every=progress_every,
                            stream=None if progress is True else progress)    # True: stdout
        reporter.format_terms = lambda t: (f"J {t['cost']:.6g} = cross-entropy "
                                           f"{t['cross_entropy']:.5g} + decay "
                                           f"{t['weight_decay']:.4g}")
    start = time.perf_counter()
    cost0 = fun(theta0)[0]
    n_evaluations = 0                                  # the start is not one of L-BFGS's
    history = {"optimizer": "lbfgs", "iteration": [0], "cost": [cost0], "elapsed": [0.0],
               "status": "done", "message": "", "n_evaluations": 0}
    if reporter is not None:
        reporter.report(0, lambda: terms(theta0, cost0))
    best = {"theta": theta0}

    def on_iteration(theta):
        iteration = len(history["iteration"])
        cost = cost_at(theta)
        elapsed = time.perf_counter() - start
        best["theta"] = theta.copy()
        history["iteration"].append(iteration)
        history["cost"].append(cost)
        history["elapsed"].append(elapsed)
        if reporter is not None and reporter.due(iteration):
            reporter.report(iteration, lambda: terms(theta, cost))
        if callback is not None and callback(
                TrainingStep("lbfgs", iteration, None, cost, as_params(theta), elapsed)):
            raise _StopRequested

    try:
        with single_threaded_scipy_blas():
            result = minimize(fun, theta0, method="L-BFGS-B", jac=True, callback=on_iteration,
                              options={"maxiter": max_iter})
        theta = result.x
        history["message"] = str(result.message)
        if not np.array_equal(theta, best["theta"]):  # SciPy returned another point (rare)
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
    final_iteration = history["iteration"][-1]
    if reporter is not None and history["status"] == "done" and final_iteration < max_iter:
        reporter.report(final_iteration, lambda: terms(theta, history["cost"][-1]),
                        note=f"  ({history['message']})")
    return as_params(theta.copy()), history


# ---------------------------------------------------------------------------
# The stages
# ---------------------------------------------------------------------------


def output_paths(out_dir, n_layers=2):
    """Where the run writes each output."""
    out_dir = Path(out_dir)
    paths = {"model": out_dir / f"{NAME}_model.npz"}
    paths.update({f"ae{k}": out_dir / f"{NAME}_ae{k}.npz" for k in range(1, n_layers + 1)})
    paths.update({
        "filters_before": out_dir / f"{NAME}_filters_before.png",
        "filters_after": out_dir / f"{NAME}_filters_after.png",
        "confusion": out_dir / f"{NAME}_confusion.png",
        "accuracy": out_dir / f"{NAME}_accuracy.png",
        "summary": out_dir / f"{NAME}_summary.txt",
    })
    return paths


def evaluate(params, data):
    """{set: accuracy} of the network on the test images, the training images (and the held-out)."""
    sets = {"test": ("test_X", "test_y"), "train": ("train_X", "train_y"),
            "holdout": ("holdout_X", "holdout_y")}
    return {name: accuracy(data[y], sa.predict(params, data[X]))
            for name, (X, y) in sets.items() if data.get(X) is not None and len(data[X])}


def run(args, data, *, start_time=None, stream=None):
    """Pretrain, fine-tune, evaluate, then write the outputs; returns (result, paths, status).

    args: the options of ``build_parser`` (resolved by ``parse_args``);
    data: a dict of arrays, train_X (m, 784) in [0, 1] and train_y (m,),
    test_X and test_y, optionally holdout_X and holdout_y. result: a dict
    with "autoencoders", "params_before", "params_after", "finetune_history",
    "accuracy" ({set: {"before", "after"}}), "seconds" (per stage), "stopped"
    (None, "interrupted" or "nonfinite") and "stopped_in" (the stage).
    """
    stream = sys.stdout if stream is None else stream
    start_time = time.perf_counter() if start_time is None else start_time
    out_dir = Path(args.out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)      # fail now, not after training
    except OSError as exc:
        print(f"error: --out-dir {out_dir}: cannot create the folder ({exc})", file=sys.stderr)
        return None, {}, 1
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    result = {"autoencoders": [], "params_before": None, "params_after": None,
              "finetune_history": None, "softmax_info": None, "accuracy": {},
              "seconds": {"loading": time.perf_counter() - start_time},
              "stopped": None, "stopped_in": None, "load_average": {"start": load}}
    X, y = data["train_X"], data["train_y"]
    sizes = [X.shape[1], *args.hidden]
    K = len(args.hidden)
    progress = False if args.quiet else stream
    stage = "training"
    try:
        with StopOnInterrupt() as interrupt:
            print(f"Stacked autoencoder: {X.shape[0]} training images"
                  + (f" (+ {len(data['holdout_X'])} held out)" if data.get("holdout_X") is not None
                     and len(data["holdout_X"]) else "")
                  + f", {len(data['test_y'])} test images; "
                  + " -> ".join(map(str, sizes)) + f" -> softmax {N_CLASSES}, {args.dtype}, "
                  f"seed {args.seed}", file=stream, flush=True)

            def stop(what, status):
                result["stopped"], result["stopped_in"] = status, what

            # 1. Greedy layer-wise pretraining: each autoencoder on the features of the one before.
            features = X
            for k, n_hidden in enumerate(args.hidden):
                what = f"autoencoder {k + 1}"
                print(f"[{k + 1}/{K + 2}] Pretraining {what}: {features.shape[0]} x "
                      f"{features.shape[1]} -> {n_hidden} (KL rho {AUTOENCODER['rho']:g}, beta "
                      f"{AUTOENCODER['beta']:g}, lam {AUTOENCODER['lam']:g}, sigmoid decoder), "
                      f"L-BFGS {args.ae_iters} iterations", file=stream, flush=True)
                model = SparseAutoencoder(n_hidden, **AUTOENCODER, max_iter=args.ae_iters,
                                          seed=args.seed + k, dtype=args.dtype)
                began = time.perf_counter()
                model.fit(features, callback=interrupt.chain(), progress=progress)
                result["seconds"][what] = time.perf_counter() - began
                result["autoencoders"].append(model)
                history = model.history_
                print(f"      {what}: J {history['cost'][-1]:.6g} after {history['iteration'][-1]} "
                      f"iterations, {result['seconds'][what]:.1f} s", file=stream, flush=True)
                if interrupt.requested:
                    history["message"] = "stopped by Ctrl-C"
                    stop(what, "interrupted")
                    break
                if history["status"] == "nonfinite":
                    stop(what, "nonfinite")
                    break
                features = model.encode(features)      # (m, n_hidden): the next one's input

            # 2. Softmax regression on the last features; the stack before fine-tuning.
            if result["stopped"] is None:
                print(f"[{K + 1}/{K + 2}] Softmax regression on autoencoder {K}'s features: "
                      f"{features.shape[0]} x {features.shape[1]} -> {N_CLASSES} classes (lam "
                      f"{SOFTMAX_LAM:g}, L-BFGS up to {args.softmax_iters} iterations)",
                      file=stream, flush=True)
                began = time.perf_counter()
                with single_threaded_scipy_blas():
                    softmax, info = train_softmax(features, y, N_CLASSES, lam=SOFTMAX_LAM,
                                                  max_iter=args.softmax_iters,
                                                  bias=args.softmax_bias)
                result["seconds"]["softmax"] = time.perf_counter() - began
                result["softmax_info"] = info
                del features
                softmax = {name: value.astype(args.dtype) for name, value in softmax.items()}
                result["params_before"] = sa.stack_from_autoencoders(
                    [model.params_ for model in result["autoencoders"]], softmax)
                before = evaluate(result["params_before"], data)
                for name, value in before.items():
                    result["accuracy"].setdefault(name, {})["before"] = value
                print(f"      softmax: J {info['cost']:.6g} after {info['n_iter']} iterations, "
                      f"{result['seconds']['softmax']:.1f} s; test accuracy before fine-tuning "
                      f"{before['test']:.2%} (UFLDL: {UFLDL_ACCURACY['before']:.1%})",
                      file=stream, flush=True)
                if interrupt.requested:
                    stop("softmax", "interrupted")

            # 3. Fine-tuning the whole network.
            if result["stopped"] is None:
                print(f"[{K + 2}/{K + 2}] Fine-tuning the whole network on {X.shape[0]} images: "
                      f"cross-entropy + ({FINETUNE_LAM:g}/2) ||theta||^2, L-BFGS "
                      f"{args.finetune_iters} iterations", file=stream, flush=True)
                began = time.perf_counter()
                params, history = finetune(result["params_before"], X, y, lam=FINETUNE_LAM,
                                           max_iter=args.finetune_iters,
                                           callback=interrupt.chain(),
                                           progress=None if args.quiet else stream)
                result["seconds"]["fine-tuning"] = time.perf_counter() - began
                result["params_after"], result["finetune_history"] = params, history
                after = evaluate(params, data)
                for name, value in after.items():
                    result["accuracy"].setdefault(name, {})["after"] = value
                print(f"      fine-tuning: J {history['cost'][0]:.6g} -> {history['cost'][-1]:.6g} "
                      f"after {history['iteration'][-1]} iterations, "
                      f"{result['seconds']['fine-tuning']:.1f} s; test accuracy {after['test']:.2%} "
                      f"(UFLDL: {UFLDL_ACCURACY['after']:.1%})", file=stream, flush=True)
                if interrupt.requested:
                    history["message"] = "stopped by Ctrl-C"
                    stop("fine-tuning", "interrupted")
                elif history["status"] == "nonfinite":
                    stop("fine-tuning", "nonfinite")

            # 4. The outputs of what was reached; each one tried on its own.
            stage = "saving"
            failures = []
            paths = write_outputs(args, data, result, out_dir, failures)
            result["load_average"]["end"] = os.getloadavg() if hasattr(os, "getloadavg") else None
            result["seconds"]["total"] = time.perf_counter() - start_time
            summary_path = output_paths(out_dir, K)["summary"]
            text = experiment.attempt(failures, "the summary", summary_path,
                                      lambda: format_summary(args, data, result))
            if text is not None and experiment.attempt(
                    failures, "the summary", summary_path, lambda: _write_text(text, summary_path)):
                paths["summary"] = summary_path
            if text is not None:
                print(text, file=stream)
            print("  wrote:     " + (", ".join(str(p) for p in paths.values()) or "nothing"),
                  file=stream)
            if interrupt.requested and result["stopped"] is None:
                result["stopped"], result["stopped_in"] = "interrupted", "saving"
            status = exit_status(result, failures)
            ending = ending_message(result, paths, status)
            if ending:
                print(ending, file=stream)
            stream.flush()
            for failure in failures:
                print(experiment.failure_line(*failure), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        if stage == "training":
            message = "Ctrl-C again: quit without saving anything"
        else:
            message = (f"Ctrl-C again while saving: quit; the files already written in {out_dir} "
                       f"are complete and the one being written was discarded")
        print(f"\n{message} (exit status {experiment.EXIT_INTERRUPTED})", file=sys.stderr,
              flush=True)
        raise SystemExit(experiment.EXIT_INTERRUPTED) from None
    return result, paths, status


def exit_status(result, failures):
    """130 after Ctrl-C, then 4 if an output failed, then 3 if a cost became non-finite, else 0."""
    if result["stopped"] == "interrupted":
        return experiment.EXIT_INTERRUPTED
    if failures:
        return experiment.EXIT_OUTPUT_FAILED
    if result["stopped"] == "nonfinite":
        return experiment.EXIT_NONFINITE
    return experiment.EXIT_OK


def ending_message(result, paths, status):
    """The last line of a run that did not finish normally (None if it did)."""
    if result["stopped"] == "interrupted":
        return (f"Interrupted by Ctrl-C in {result['stopped_in']}: the outputs of what was reached "
                f"are written (above). Exit status {status}.")
    if result["stopped"] == "nonfinite":
        return (f"Stopped: the cost of {result['stopped_in']} became NaN or infinite; the last "
                f"finite parameters are written (above). Exit status {status}.")
    if status == experiment.EXIT_OUTPUT_FAILED:
        return f"Trained, but some outputs failed (the errors below). Exit status {status}."
    return None


def network_info(args, data, result, params):
    """The JSON dict saved with the network in stacked_model.npz."""
    history = result["finetune_history"]
    return {
        "script": "stacked_mnist.py",
        "sizes": [int(s) for s in network_sizes(params)[0]],
        "n_classes": N_CLASSES,
        "dtype": args.dtype,
        "seed": args.seed,
        "finetuned": params is result["params_after"],
        "finetune_iterations": history["iteration"][-1] if history else 0,
        "finetune_evaluations": history["n_evaluations"] if history else 0,
        "finetune_cost": [float(c) for c in history["cost"]] if history else [],
        "finetune_status": history["status"] if history else None,
        "autoencoder": dict(AUTOENCODER, max_iter=args.ae_iters),
        "softmax": {"lam": SOFTMAX_LAM, "max_iter": args.softmax_iters, "bias": args.softmax_bias},
        "finetune": {"lam": FINETUNE_LAM, "max_iter": args.finetune_iters},
        "m_train": int(len(data["train_y"])), "m_test": int(len(data["test_y"])),
        "m_holdout": int(len(data["holdout_y"])) if data.get("holdout_y") is not None else 0,
        "accuracy": {name: dict(values) for name, values in result["accuracy"].items()},
        "ufldl_accuracy": dict(UFLDL_ACCURACY),
        "seconds": {name: float(s) for name, s in result["seconds"].items()},
    }


def write_outputs(args, data, result, out_dir, failures):
    """Write the outputs of what was reached; returns {key: path} of those written."""
    from saelab.figures import plots  # matplotlib only when figures are written

    targets = output_paths(out_dir, len(args.hidden))
    paths = {}

    def attempt(key, what, write):
        if experiment.attempt(failures, what, targets[key], lambda: write(targets[key]) or True):
            paths[key] = targets[key]

    for k, model in enumerate(result["autoencoders"], start=1):
        source = "pixels / 255" if k == 1 else f"features a2 of autoencoder {k - 1}"
        info = {"data": f"MNIST training images ({len(data['train_y'])}), {source}",
                "stacked_layer": k, **({"tile_shape": list(TILE_SHAPE)} if k == 1 else {})}
        attempt(f"ae{k}", f"autoencoder {k}", lambda path, model=model, info=info:
                model.save(path, info=info))
    params = result["params_after"]
    if params is None:
        params = result["params_before"]                # the pretrained network, if it exists
    if params is not None:
        attempt("model", "the network", lambda path: save_stacked(
            path, params, info=network_info(args, data, result, params)))
    if result["autoencoders"]:
        attempt("filters_before", "the filters before fine-tuning", lambda path:
                plots.save_filter_grid(result["autoencoders"][0].params_["W1"], path, TILE_SHAPE))
    if result["params_after"] is not None:
        after = result["params_after"]
        attempt("filters_after", "the filters after fine-tuning", lambda path:
                plots.save_filter_grid(after["stack"][0]["W"], path, TILE_SHAPE))
        attempt("confusion", "the confusion matrix", lambda path: plots.save_confusion_matrix(
            confusion_matrix(data["test_y"], sa.predict(after, data["test_X"]), N_CLASSES), path,
            title="Stacked autoencoder after fine-tuning, MNIST test images"))
    test = result["accuracy"].get("test", {})
    if test:
        bars = {f"{STAGE_LABELS[key]}\n({len(data['test_y'])} test images)": value
                for key, value in test.items()}
        reference = {f"{STAGE_LABELS[key]}\n({len(data['test_y'])} test images)": value
                     for key, value in UFLDL_ACCURACY.items()}
        iterations = (result["finetune_history"]["iteration"][-1]
                      if result["finetune_history"] else 0)
        title = (" -> ".join(map(str, [data["train_X"].shape[1], *args.hidden]))
                 + f" -> {N_CLASSES}: {len(data['train_y'])} training images, fine-tuned "
                 f"{iterations} iterations")
        attempt("accuracy", "the accuracy figure", lambda path: plots.save_accuracy_bars(
            bars, path, reference=reference, title=title))
    return paths


def _write_text(text, path):
    with atomic_write(path, mode="w") as handle:
        handle.write(text + "\n")
    return path


def format_summary(args, data, result):
    """The summary as printed and written to stacked_summary.txt."""
    sizes = [data["train_X"].shape[1], *args.hidden]
    m_holdout = len(data["holdout_y"]) if data.get("holdout_y") is not None else 0
    lines = [
        "Stacked autoencoder on MNIST (UFLDL's Building Deep Networks for Classification)",
        f"  network:      {' -> '.join(map(str, sizes))} -> softmax {N_CLASSES} "
        f"({'with' if args.softmax_bias else 'no'} softmax bias), {args.dtype}, seed {args.seed}",
        f"  data:         {len(data['train_y'])} training images"
        + (f" (the last {m_holdout} of the first {len(data['train_y']) + m_holdout} held out)"
           if m_holdout else "") + f", {len(data['test_y'])} test images, pixels / 255",
        f"  pretraining:  sparse autoencoders (KL rho {AUTOENCODER['rho']:g}, beta "
        f"{AUTOENCODER['beta']:g}, lam {AUTOENCODER['lam']:g}, sigmoid decoder, L-BFGS "
        f"{args.ae_iters} iterations); softmax (lam {SOFTMAX_LAM:g}, L-BFGS up to "
        f"{args.softmax_iters} iterations)",
        f"  fine-tuning:  cross-entropy + ({FINETUNE_LAM:g}/2) ||theta||^2 over all weights, "
        f"L-BFGS {args.finetune_iters} iterations",
        "",
        f"  {'stage':<28} {'iterations':>10}  {'cost J':<24} {'seconds':>8}",
    ]
    seconds = result["seconds"]
    lines.append(f"  {'loading MNIST':<28} {'':>10}  {'':<24} {seconds['loading']:>8.1f}")
    for k, model in enumerate(result["autoencoders"], start=1):
        history = model.history_
        name = f"autoencoder {k} ({sizes[k - 1]} -> {sizes[k]})"
        lines.append(f"  {name:<28} {history['iteration'][-1]:>10}  "
                     f"{history['cost'][-1]:<24.6g} {seconds[f'autoencoder {k}']:>8.1f}"
                     + ("" if history["status"] == "done" else f"  ({history['message']})"))
    if result["softmax_info"] is not None:
        info = result["softmax_info"]
        lines.append(f"  {'softmax':<28} {info['n_iter']:>10}  {info['cost']:<24.6g} "
                     f"{seconds['softmax']:>8.1f}" + ("  (converged)" if info["converged"] else ""))
    history = result["finetune_history"]
    if history is not None:
        cost = f"{history['cost'][0]:.6g} -> {history['cost'][-1]:.6g}"
        lines.append(f"  {'fine-tuning':<28} {history['iteration'][-1]:>10}  {cost:<24} "
                     f"{seconds['fine-tuning']:>8.1f}"
                     + ("" if history["status"] == "done" and history["iteration"][-1]
                        == args.finetune_iters else f"  ({history['message']})"))
    if "total" in seconds:
        counted = sum(value for key, value in seconds.items() if key != "total")
        lines.append(f"  {'encoding, evaluation, files':<28} {'':>10}  {'':<24} "
                     f"{seconds['total'] - counted:>8.1f}")
        lines.append(f"  {'total wall time':<28} {'':>10}  {'':<24} {seconds['total']:>8.1f}")
    lines += ["", f"  {'accuracy':<34} {'before fine-tuning':>18}  {'after fine-tuning':>18}"]
    sets = (("test", f"test images ({len(data['test_y'])})"),
            ("train", f"training images ({len(data['train_y'])})"),
            ("holdout", f"held-out training images ({m_holdout})"))
    for key, title in sets:
        values = result["accuracy"].get(key)
        if values:
            cells = [f"{values[s]:.2%}" if s in values else "-" for s in ("before", "after")]
            lines.append(f"  {title:<34} {cells[0]:>18}  {cells[1]:>18}")
            if key == "test":
                lines.append(f"  {'  UFLDL, reported (test)':<34} "
                             f"{UFLDL_ACCURACY['before']:>18.1%}  {UFLDL_ACCURACY['after']:>18.1%}")
    if not result["accuracy"]:
        lines.append("  (no network: pretraining did not reach the softmax)")
    before, after = result["params_before"], result["params_after"]
    if before is not None and after is not None:
        W0, W1 = before["stack"][0]["W"], after["stack"][0]["W"]
        change = float(np.linalg.norm(W1 - W0) / np.linalg.norm(W0))
        lines += ["", f"  fine-tuning changed the first layer's weights by {change:.2%} "
                      f"(||W_after - W_before|| / ||W_before||)"]
    loads = result["load_average"]
    if loads.get("start") is not None:
        text = "/".join(f"{v:.2f}" for v in loads["start"])
        if loads.get("end") is not None:
            text += " at the start, " + "/".join(f"{v:.2f}" for v in loads["end"]) + " at the end"
        lines.append(f"  load average (1/5/15 min): {text}")
    if result["stopped"] == "interrupted":
        lines.append(f"  NOTE: interrupted by Ctrl-C in {result['stopped_in']}: the numbers are "
                     f"those of the parameters reached")
    elif result["stopped"] == "nonfinite":
        lines.append(f"  NOTE: the cost of {result['stopped_in']} became NaN or infinite; the "
                     f"last finite parameters are kept")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# The script
# ---------------------------------------------------------------------------


def build_parser():
    parser = argparse.ArgumentParser(
        description="UFLDL's Building Deep Networks for Classification: two sparse autoencoders "
                    "(784 -> 200 -> 200) pretrained layer by layer on MNIST, softmax regression "
                    "on their features, then the whole network fine-tuned with backpropagation "
                    "and L-BFGS; test accuracy before and after fine-tuning.",
        epilog=experiment.EXIT_STATUS_HELP,
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data-dir", type=experiment.nonempty_path, default=Path("data/mnist"),
                      help="folder with the four MNIST IDX files (raw or .gz); missing files are "
                           "downloaded into it (default data/mnist)")
    data.add_argument("--examples", type=experiment.positive_int, default=None,
                      help=f"use the first N training images, at most {MNIST_SIZES['train']} "
                           f"(default all {FULL['examples']}; {QUICK['examples']} with --quick)")
    data.add_argument("--test-examples", type=experiment.positive_int, default=None,
                      help=f"test on the first N test images, at most {MNIST_SIZES['test']} "
                           f"(default all {FULL['test_examples']}; {QUICK['test_examples']} with "
                           f"--quick)")
    data.add_argument("--holdout", type=experiment.nonnegative_int, default=0,
                      help="keep the last N of the training images out of all training and report "
                           "the accuracy on them: compare settings on these, not on the test "
                           "images (default 0)")
    model = parser.add_argument_group("model and training")
    model.add_argument("--hidden", type=experiment.positive_int, nargs="+", default=[200, 200],
                       metavar="N",
                       help="the width of each autoencoder, first to last: one number per layer "
                            "(default 200 200)")
    model.add_argument("--ae-iters", type=experiment.positive_int, default=None,
                       help=f"L-BFGS iterations of each autoencoder (default {FULL['ae_iters']}; "
                            f"{QUICK['ae_iters']} with --quick)")
    model.add_argument("--softmax-iters", type=experiment.positive_int, default=None,
                       help=f"maximum L-BFGS iterations of the softmax regression (default "
                            f"{FULL['softmax_iters']}; {QUICK['softmax_iters']} with --quick)")
    model.add_argument("--finetune-iters", type=experiment.positive_int, default=None,
                       help=f"L-BFGS iterations of fine-tuning (default {FULL['finetune_iters']}; "
                            f"{QUICK['finetune_iters']} with --quick)")
    model.add_argument("--softmax-bias", action=argparse.BooleanOptionalAction, default=True,
                       help="give softmax a bias per class (never decayed); --no-softmax-bias is "
                            "UFLDL's exact bias-free model (default: with bias)")
    model.add_argument("--seed", type=experiment.nonnegative_int, default=0,
                       help="seed of the autoencoders' initialization; autoencoder k uses "
                            "seed + k - 1 (default 0)")
    model.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                       help="dtype of the weights and of the whole computation (default float32: "
                            "half float64's time; on 10000 held-out training images it gave "
                            "98.04%% after fine-tuning, float64 98.05%%; docs/stacked.md)")
    out = parser.add_argument_group("output")
    out.add_argument("--out-dir", type=experiment.output_dir, default=Path(f"runs/{NAME}"),
                     help=f"folder for the model files, figures and summary (default runs/{NAME})")
    out.add_argument("--quick", action="store_true",
                     help=f"a tiny run in seconds: {QUICK['examples']} training and "
                          f"{QUICK['test_examples']} test images, {QUICK['ae_iters']} / "
                          f"{QUICK['softmax_iters']} / {QUICK['finetune_iters']} iterations "
                          f"(options given explicitly win)")
    out.add_argument("--quiet", action="store_true",
                     help="no progress lines while training (the stage lines and the summary are "
                          "still printed)")
    return parser


def finetune_bytes(m, sizes, n_classes, itemsize):
    """(bytes for the parameters and L-BFGS's state, bytes for the activations) of fine-tuning."""
    n_params = sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    n_params += n_classes * (sizes[-1] + 1)
    per_param = 6 * itemsize + 8 * (2 * 10 + 8)        # arrays, grads, L-BFGS's float64 state
    activations = m * (4 * sum(sizes[1:]) + 6 * n_classes) * itemsize
    return n_params * per_param, activations


def memory_error(args, available=None):
    """(option, message) if the run the options ask for cannot fit in memory, else None."""
    available = memory.available_memory() if available is None else available
    if available is None:
        return None
    itemsize = 4 if args.dtype == "float32" else 8
    m = args.examples
    resident = (m + args.test_examples) * N_PIXELS * itemsize      # the images, kept throughout
    sizes = [N_PIXELS, *args.hidden]
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        problem = memory.training_memory_error(
            m=m, n_visible=n_in, n_hidden=n_out, itemsize=itemsize, optimizer="lbfgs",
            data_option="--examples", available=available - resident)
        if problem is not None:
            return problem
    params, activations = finetune_bytes(m, sizes, N_CLASSES, itemsize)
    if params + activations + resident > available:
        option = "--hidden" if params > available // 2 else "--examples"
        return option, (f"{option}: fine-tuning {m} examples through "
                        f"{' -> '.join(map(str, sizes))} -> {N_CLASSES} would need about "
                        f"{memory.format_bytes(params + activations + resident)} of memory, more "
                        f"than the {memory.format_bytes(available)} available")
    return None


def parse_args(argv=None, parser=None):
    """Parse the options, fill in the --quick or full defaults, and refuse through
    ``parser.error`` (exit 2, one line) what the run would fail on later: sizes beyond MNIST
    or memory, a held-out set that leaves nothing to train on, outputs that are folders."""
    parser = build_parser() if parser is None else parser
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for option, value, split in (("--examples", args.examples, "train"),
                                 ("--test-examples", args.test_examples, "test")):
        if value > MNIST_SIZES[split]:
            parser.error(f"{option}: MNIST has {MNIST_SIZES[split]} images in its {split} split, "
                         f"got {value}")
    if args.holdout >= args.examples:
        parser.error(f"--holdout: expected fewer than the {args.examples} training images "
                     f"(--examples), so that some are left to train on, got {args.holdout}")
    problem = memory_error(args)
    if problem is not None:
        parser.error(problem[1])
    for path in output_paths(args.out_dir, len(args.hidden)).values():
        if path.is_dir():
            parser.error(f"--out-dir: {path} is a folder, but the run writes a file of that name")
    return args


def load_data(args):
    """The arrays ``run`` takes, from the MNIST files (errors: OSError, ValueError)."""
    X, y = mnist.load_mnist(args.data_dir, "train", n=args.examples, dtype=args.dtype)
    X_test, y_test = mnist.load_mnist(args.data_dir, "test", n=args.test_examples, dtype=args.dtype)
    n_train = args.examples - args.holdout
    return {"train_X": X[:n_train], "train_y": y[:n_train],
            "holdout_X": X[n_train:], "holdout_y": y[n_train:],
            "test_X": X_test, "test_y": y_test}


def main(argv=None):
    start_time = time.perf_counter()
    args = parse_args(argv)
    try:
        data = load_data(args)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return run(args, data, start_time=start_time)[-1]


if __name__ == "__main__":
    experiment.run_script(main)
