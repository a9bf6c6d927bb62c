"""How close the cost-and-gradient evaluation comes to the matrix-multiply floor, on this machine.

One evaluation of the cost and gradient needs five matrix products (two
forward, three backward), 10 * m * n_visible * n_hidden flops in all:

    X @ W1.T        (m, n_visible) x (n_visible, n_hidden)   forward, z2
    a2 @ W2.T       (m, n_hidden)  x (n_hidden, n_visible)   forward, z3
    delta3.T @ a2   (n_visible, m) x (m, n_hidden)           dJ/dW2
    delta3 @ W2     (m, n_visible) x (n_visible, n_hidden)   W2^T delta3
    delta2.T @ X    (n_hidden, m)  x (m, n_visible)          dJ/dW1

Everything else (sigmoids, the sparsity term, the cost) is elementwise. The
time of those five products alone, with the same shapes and dtype, into
preallocated outputs, in the same process, is the "floor". For every shape
and dtype this script times ``cost_and_grad`` (KL penalty, sigmoid decoder,
default rho, beta, lam; random X in [0, 1], ``init_params`` weights) and the
floor, alternately, after a warm-up, and reports medians; it times the
per-example loop ``reference.loop_cost_and_grad`` on a subset of rows and
scales it to m rows; and it measures the peak extra memory of one call with
tracemalloc (NumPy reports its array buffers to tracemalloc).

On a machine shared with other programs the milliseconds mean little; the
ratio to the floor, measured alternately in one run, holds up better, but
not when another program holds a core: OpenBLAS's threads then wait for one
another and small products slow down a hundredfold. Each row therefore shows
the share of the CPU that other programs used while it was timed, and
--blas-threads 1 gives ratios against one core's BLAS, which load disturbs
less.

    python -m benchmarks.bench                       # the full table (a minute or two when idle)
    python -m benchmarks.bench --quick               # fewer repeats, a smaller loop subset
    python -m benchmarks.bench --accuracy            # also float32 against float64
    python -m benchmarks.bench --shapes 10000x784x196 --dtypes float32
    python -m benchmarks.bench --blas-threads 1      # BLAS on one thread
    python -m benchmarks.bench --train --data-dir ../shared/data/mnist   # also time train_mnist.py
    python -m benchmarks.bench --models relu_l1 topk topk_auxk   # today's SAEs (modern_sae.py) instead

With --models, the table is that of the ReLU + L1 and TopK models (issue
13): one cost-and-gradient call, readable (``modern_sae``) and tuned
(``fast.relu_l1_cost_and_grad``, ``fast.topk_cost_and_grad``), against the
same five products (default shape 10000 x 784 -> 256, k = n_hidden / 8), and, for
topk_auxk, with a quarter of the latents dead and AuxK on them (which adds
three products of its own: a_aux W2^T, its W2^T backward and dJ/dW2).

With --train, the --train-args are checked by train_mnist.py's own parser
(``train_mnist.parse_args``, which runs nothing) and --data-dir must be a
folder, before the benchmark starts: a bad value is refused at once (exit
status 2, one line). Exit status: 0 done, 1 a timed train_mnist.py run
failed (its exit status and the end of its stderr are printed), 2 bad
options.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from saelab.checks.argtypes import nonempty_path, nonnegative_int, positive_int
import fast
from saelab.checks import memory
import sparse_autoencoder as sae
from gradcheck import numerical_gradient, relative_difference
import modern_sae
from reference import loop_cost_and_grad

ROOT = Path(__file__).resolve().parents[1]          # the repository root
DEFAULT_SHAPES = ("10000x64x25", "10000x100x100", "10000x784x196", "60000x784x196")
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data" / "mnist"
MODEL_CHOICES = ("relu_l1", "topk", "topk_auxk")
DEFAULT_MODEL_SHAPES = ("10000x784x256",)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def parse_shape(text):
    """'10000x784x196' or '10000x784->196' -> (m, n_visible, n_hidden)."""
    parts = re.split(r"x|->|:|,", text.strip())
    try:
        m, n_visible, n_hidden = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--shapes: expected MxN_VISIBLExN_HIDDEN such as 10000x784x196, got {text!r}"
        ) from None
    if min(m, n_visible, n_hidden) < 1:
        raise argparse.ArgumentTypeError(f"--shapes: all sizes must be >= 1, got {text!r}")
    # X in both dtypes, the activations and deltas of the readable, tuned and floor calls, params.
    needed = m * n_visible * 12 + m * (n_visible + n_hidden) * 8 * 6 + 2 * n_visible * n_hidden * 8 * 4
    try:
        memory.check_memory("--shapes", needed, f"the shape {text}")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return m, n_visible, n_hidden


def build_parser():
    parser = argparse.ArgumentParser(
        description="Time the readable and the tuned cost_and_grad against the five-matrix-product floor and the "
                    "per-example loop; measure its peak extra memory; print a Markdown table.",
    )
    parser.add_argument(
        "--shapes", nargs="+", type=parse_shape, default=None, metavar="MxVxH",
        help="problem sizes m x n_visible x n_hidden (default: "
             + " ".join(DEFAULT_SHAPES) + ")",
    )
    parser.add_argument(
        "--dtypes", nargs="+", choices=("float64", "float32"), default=["float64", "float32"],
        help="dtypes to time (default: float64 float32)",
    )
    parser.add_argument(
        "--repeats", type=positive_int, default=None,
        help="timed calls of cost_and_grad and of the floor per row, after warm-up; "
             "the table shows medians (default 9, or 3 with --quick)",
    )
    parser.add_argument(
        "--warmup", type=nonnegative_int, default=None,
        help="untimed calls before timing (default 2, or 1 with --quick)",
    )
    parser.add_argument(
        "--loop-rows", type=positive_int, default=None,
        help="rows of X given to the per-example loop; its time is scaled to m rows "
             "(default 300, or 50 with --quick)",
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="a quick look: 3 repeats, 1 warm-up call, 50 rows for the loop",
    )
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="seed of the random data and weights")
    parser.add_argument(
        "--models", nargs="+", choices=MODEL_CHOICES, default=None,
        help="time today's SAEs instead (modern_sae.py): relu_l1, topk (k = n_hidden / 8), "
             "topk_auxk (a quarter of the latents dead, aux_k = n_hidden / 2); default shape "
             + " ".join(DEFAULT_MODEL_SHAPES),
    )
    parser.add_argument(
        "--blas-threads", type=positive_int, default=None,
        help="set OpenBLAS's thread count (through ctypes) before timing; 1 gives ratios that "
             "other programs on the machine disturb less (default: leave BLAS as it is)",
    )
    parser.add_argument(
        "--accuracy", action="store_true",
        help="also print how far float32 cost and gradient are from float64 ones, for each shape "
             "(same data and weights, rounded to float32)",
    )
    parser.add_argument(
        "--train", action="store_true",
        help="also time full default runs of train_mnist.py (skipped, with a message, "
             "if train_mnist.py is not in this tree)",
    )
    parser.add_argument(
        "--train-runs", type=positive_int, default=1,
        help="number of train_mnist.py runs; the median wall time is reported (default 1)",
    )
    parser.add_argument(
        "--train-args", default="",
        help="extra arguments for train_mnist.py, as one quoted string, e.g. '--dtype float32'",
    )
    parser.add_argument(
        "--data-dir", type=nonempty_path, default=DEFAULT_DATA_DIR,
        help=f"MNIST directory passed to train_mnist.py --data-dir (default {DEFAULT_DATA_DIR})",
    )
    parser.epilog = ("Exit status: 0 done; 1 a timed train_mnist.py run failed; 2 bad options "
                     "(with --train, also --train-args that train_mnist.py would refuse, checked "
                     "before the benchmark starts).")
    return parser


class _Refused(Exception):
    """train_mnist.py's parser refused the --train-args (raised instead of exiting)."""


def check_train_args(parser, args):
    """``parser.error`` (exit 2, one line) if ``--train`` could not run: checked before the
    benchmark, so that a typo does not cost the minutes the benchmark takes.

    The --train-args are parsed by train_mnist.py's own parser and checks
    (``train_mnist.parse_args``), as the timed run will get them, without running anything.
    """
    if not args.train or not (ROOT / "train_mnist.py").exists():
        return                                  # no train_mnist.py: skipped later, with a message
    if not args.data_dir.is_dir():
        parser.error(f"--data-dir: {args.data_dir} is not a folder; --train times train_mnist.py "
                     f"on the MNIST files in it")
    try:
        extra = shlex.split(args.train_args)
    except ValueError as exc:
        parser.error(f"--train-args: cannot split {args.train_args!r}: {exc}")
    import train_mnist

    inner = train_mnist.build_parser()

    def refuse(message):
        raise _Refused(message)

    inner.error = refuse
    with tempfile.TemporaryDirectory(prefix="bench-check-") as out_dir:
        try:
            train_mnist.parse_args(["--data-dir", str(args.data_dir), "--out-dir", out_dir, *extra],
                                   parser=inner)
        except _Refused as exc:
            parser.error(f"--train-args: train_mnist.py would refuse {args.train_args!r}: {exc}")
        except SystemExit:                      # --help, --version: nothing would be timed
            parser.error(f"--train-args: {args.train_args!r} makes train_mnist.py exit "
                         f"without training")


# ---------------------------------------------------------------------------
# Machine
# ---------------------------------------------------------------------------


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info():
    """BLAS name and version from numpy.show_config, without extra packages."""
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        text = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
        openblas = blas.get("openblas configuration")
        if openblas:
            text += f" ({openblas})"
        return text
    except Exception as exc:  # older NumPy: no mode="dicts"
        return f"unknown ({type(exc).__name__})"


def _openblas_library():
    """The OpenBLAS library NumPy loaded, through ctypes; None if not found."""
    import ctypes

    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps.splitlines()
                    if "openblas" in line.lower() and line.split()[-1].startswith("/")})
    for path in paths:
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


def _openblas_call(lib, names, restype):
    for name in names:
        function = getattr(lib, name, None)
        if function is not None:
            function.restype = restype
            return function()
    return None


def set_blas_threads(count):
    """Ask OpenBLAS (through ctypes) to use ``count`` threads; False if that is not possible."""
    import ctypes

    lib = _openblas_library()
    if lib is None:
        return False
    for name in ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_",
                 "scipy_openblas_set_num_threads", "openblas_set_num_threads"):
        function = getattr(lib, name, None)
        if function is not None:
            function.argtypes = [ctypes.c_int]
            function(count)
            return True
    return False


def blas_runtime():
    """(threads, kernel name) that OpenBLAS uses at run time, or None each."""
    import ctypes

    lib = _openblas_library()
    if lib is None:
        return None, None
    prefixes = ("scipy_openblas_", "openblas_")
    suffixes = ("64_", "")
    threads = _openblas_call(lib, [p + "get_num_threads" + s for p in prefixes for s in suffixes],
                             ctypes.c_int)
    core = _openblas_call(lib, [p + "get_corename" + s for p in prefixes for s in suffixes],
                          ctypes.c_char_p)
    return threads, (core.decode() if core else None)


def machine_lines():
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads, core = blas_runtime()
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
           if k in os.environ}
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    return [
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores ({affinity} usable)",
        f"- Python {platform.python_version()}, NumPy {np.__version__}",
        f"- BLAS: {blas_info()}",
        f"- BLAS at run time: {threads if threads is not None else 'unknown'} threads, "
        f"kernel {core or 'unknown'}"
        + (f"; environment {env}" if env else ""),
        f"- load average (1/5/15 min) at start: {load}",
    ]


class OtherLoad:
    """Share of the machine's CPU time used by other programs between start() and share().

    From /proc/stat (all CPUs' busy time) minus this process's own CPU time
    (os.times). None where /proc/stat is missing. The timings of a row are
    trustworthy only when this is near 0%.
    """

    def __init__(self):
        self.start()

    @staticmethod
    def _sample():
        try:
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        except (OSError, ValueError):
            return None
        ticks = os.sysconf("SC_CLK_TCK")
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)      # idle + iowait
        own = os.times()
        return sum(fields) / ticks, (sum(fields) - idle) / ticks, own.user + own.system

    def start(self):
        self.begin = self._sample()

    def share(self):
        end = self._sample()
        if self.begin is None or end is None or end[0] <= self.begin[0]:
            return None
        total, busy, own = (b - a for a, b in zip(self.begin, end))
        return max(0.0, (busy - own) / total)


# ---------------------------------------------------------------------------
# Measurements
# ---------------------------------------------------------------------------


def make_problem(m, n_visible, n_hidden, dtype, seed):
    """init_params weights and X uniform in [0, 1), both of ``dtype``."""
    rng = np.random.default_rng(seed)
    params = sae.init_params(n_visible, n_hidden, rng=rng, dtype=dtype)
    X = rng.random((m, n_visible), dtype=dtype)
    return params, X


def make_floor(params, X):
    """A function that computes the five products of one evaluation, nothing else.

    Inputs of the right shapes and dtype (random, so no denormals or zeros
    make BLAS faster than it would be) and preallocated outputs: the function
    times the multiplications alone.
    """
    rng = np.random.default_rng(1)
    m, n_visible = X.shape
    n_hidden = params["W1"].shape[0]
    dtype = X.dtype
    W1, W2 = params["W1"], params["W2"]
    a2 = rng.random((m, n_hidden), dtype=dtype)
    delta3 = rng.random((m, n_visible), dtype=dtype)
    delta2 = rng.random((m, n_hidden), dtype=dtype)
    z2 = np.empty((m, n_hidden), dtype)
    z3 = np.empty((m, n_visible), dtype)
    dW2 = np.empty((n_visible, n_hidden), dtype)
    back = np.empty((m, n_hidden), dtype)
    dW1 = np.empty((n_hidden, n_visible), dtype)

    def five_products():
        np.matmul(X, W1.T, out=z2)             # z2 without b1
        np.matmul(a2, W2.T, out=z3)            # z3 without b2
        np.matmul(delta3.T, a2, out=dW2)       # sum_i delta3 a2^T
        np.matmul(delta3, W2, out=back)        # W2^T delta3
        np.matmul(delta2.T, X, out=dW1)        # sum_i delta2 x^T

    return five_products


def time_alternately(functions, repeats, warmup):
    """Median seconds of each function, calls interleaved so load hits all alike."""
    for _ in range(warmup):
        for f in functions:
            f()
    samples = [[] for _ in functions]
    for _ in range(repeats):
        for f, times in zip(functions, samples):
            start = time.perf_counter()
            f()
            times.append(time.perf_counter() - start)
    return [(statistics.median(t), min(t), max(t)) for t in samples]


def time_loop(params, X, rows):
    """Seconds per example of the per-example loop on the first ``rows`` rows."""
    subset = X[:rows]
    start = time.perf_counter()
    loop_cost_and_grad(params, subset)
    return (time.perf_counter() - start) / subset.shape[0]


def peak_extra_bytes(f):
    """Peak bytes allocated during f() above what was allocated before it."""
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        result = f()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del result
    return peak - before


def bench_row(m, n_visible, n_hidden, dtype, *, repeats, warmup, loop_rows, seed):
    params, X = make_problem(m, n_visible, n_hidden, dtype, seed)

    def readable():
        return sae.cost_and_grad(params, X, penalty="kl", decoder="sigmoid")

    def tuned():
        return fast.cost_and_grad(params, X, penalty="kl", decoder="sigmoid")

    floor = make_floor(params, X)
    load = OtherLoad()
    timings = time_alternately([readable, tuned, floor], repeats, warmup)
    (t_readable, _, _), (t_tuned, lo_tuned, hi_tuned), (t_floor, _, _) = timings
    others = load.share()
    per_example_loop = time_loop(params, X, min(loop_rows, m))
    flops = 10.0 * m * n_visible * n_hidden
    return {
        "shape": f"{m} x {n_visible} -> {n_hidden}",
        "dtype": np.dtype(dtype).name,
        "loop_ms": 1e3 * per_example_loop * m,
        "readable_ms": 1e3 * t_readable,
        "ms": 1e3 * t_tuned,
        "spread": f"{1e3 * lo_tuned:.1f}-{1e3 * hi_tuned:.1f}",
        "floor_ms": 1e3 * t_floor,
        "readable_ratio": t_readable / t_floor,
        "ratio": t_tuned / t_floor,
        "speedup": per_example_loop * m / t_tuned,
        "gflops": flops / t_tuned / 1e9,
        "readable_memory": peak_extra_bytes(readable) / X.nbytes,
        "memory": peak_extra_bytes(tuned) / X.nbytes,
        "others": "?" if others is None else f"{100 * others:.0f}%",
    }


def markdown_table(rows):
    header = ("| shape (m x n_visible -> n_hidden) | dtype | loop ms (scaled) | readable ms "
              "| tuned ms (min-max) | floor ms | readable / floor | tuned / floor "
              "| tuned speed-up over loop | tuned GFLOP/s | peak extra memory / X.nbytes "
              "(readable, tuned) | CPU used by others |")
    lines = [header, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['dtype']} | {r['loop_ms']:.0f} | {r['readable_ms']:.1f} "
            f"| {r['ms']:.1f} ({r['spread']}) | {r['floor_ms']:.1f} | {r['readable_ratio']:.2f}x "
            f"| {r['ratio']:.2f}x | {r['speedup']:.0f}x | {r['gflops']:.1f} "
            f"| {r['readable_memory']:.2f}, {r['memory']:.2f} | {r['others']} |"
        )
    return "\n".join(lines)


def model_calls(models, m, n_visible, n_hidden, dtype, seed, module=modern_sae):
    """(params, X, {model: one cost-and-gradient call}) for ``bench_models_row``.

    module: ``modern_sae`` (readable) or ``fast`` (tuned).

    X uniform in [0, 1) (784 pixels' range). TopK: its initialization
    (unit-norm decoder, W1 = W2^T, b2 the geometric median of X), k =
    n_hidden / 8; topk_auxk: every fourth latent dead, aux_k = n_hidden / 2,
    and c given (as training passes it: ``mean_prediction_scale(X)``, once).
    ReLU + L1: Anthropic's initialization (decoder columns of norm 0.1, W1 =
    W2^T, both biases 0), l1 = 0.1 (about half the latents fire at this
    initialization). The params returned are TopK's (the floor's products
    have the same shapes for both).
    """
    rng = np.random.default_rng(seed)
    X = rng.random((m, n_visible), dtype=dtype)
    params = modern_sae.init_topk(n_visible, n_hidden, rng=rng, dtype=dtype, X=X)
    relu_params = modern_sae.init_relu_l1(n_visible, n_hidden, rng=rng, dtype=dtype)
    k = max(1, n_hidden // 8)
    dead = np.zeros(n_hidden, dtype=bool)
    dead[::4] = True
    c = modern_sae.mean_prediction_scale(X)
    calls = {
        "relu_l1": lambda: module.relu_l1_cost_and_grad(relu_params, X, l1=0.1),
        "topk": lambda: module.topk_cost_and_grad(params, X, k=k),
        "topk_auxk": lambda: module.topk_cost_and_grad(params, X, k=k, aux_k=max(1, n_hidden // 2),
                                                       dead=dead, aux_scale=c),
    }
    return params, X, {name: calls[name] for name in models}


def bench_models_row(models, m, n_visible, n_hidden, dtype, *, repeats, warmup, seed):
    """One row per model: ms per call (readable, tuned), the five-product floor, the ratios,
    peak extra memory."""
    params, X, readable = model_calls(models, m, n_visible, n_hidden, dtype, seed)
    _, _, tuned = model_calls(models, m, n_visible, n_hidden, dtype, seed, module=fast)
    floor = make_floor(params, X)
    load = OtherLoad()
    timings = time_alternately([*readable.values(), *tuned.values(), floor], repeats, warmup)
    others = load.share()
    t_floor = timings[-1][0]
    rows = []
    for i, name in enumerate(readable):
        t_readable = timings[i][0]
        t, lo, hi = timings[len(readable) + i]
        rows.append({
            "model": name, "shape": f"{m} x {n_visible} -> {n_hidden}", "dtype": np.dtype(dtype).name,
            "readable_ms": 1e3 * t_readable, "ms": 1e3 * t, "spread": f"{1e3 * lo:.1f}-{1e3 * hi:.1f}",
            "floor_ms": 1e3 * t_floor, "readable_ratio": t_readable / t_floor, "ratio": t / t_floor,
            "readable_memory": peak_extra_bytes(readable[name]) / X.nbytes,
            "memory": peak_extra_bytes(tuned[name]) / X.nbytes,
            "others": "?" if others is None else f"{100 * others:.0f}%",
        })
    return rows


def models_table(rows):
    lines = ["| model | shape (m x n_visible -> n_hidden) | dtype | readable ms | tuned ms (min-max) "
             "| floor ms | readable / floor | tuned / floor | peak extra memory / X.nbytes "
             "(readable, tuned) | CPU used by others |",
             "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['model']} | {r['shape']} | {r['dtype']} | {r['readable_ms']:.1f} "
                     f"| {r['ms']:.1f} ({r['spread']}) | {r['floor_ms']:.1f} "
                     f"| {r['readable_ratio']:.2f}x | {r['ratio']:.2f}x "
                     f"| {r['readable_memory']:.2f}, {r['memory']:.2f} | {r['others']} |")
    return "\n".join(lines)


def float32_accuracy(m, n_visible, n_hidden, seed):
    """Relative differences of the float32 cost and gradient from the float64 ones.

    The float64 problem of ``make_problem`` and its float32 rounding; the
    gradient difference is ||g32 - g64|| / ||g64|| over all of theta and per
    block. Also the largest relative error of a single gradient entry among
    those at least 1e-3 of the largest entry.
    """
    params, X = make_problem(m, n_visible, n_hidden, np.float64, seed)
    params32 = {name: value.astype(np.float32) for name, value in params.items()}
    cost64, grads64 = fast.cost_and_grad(params, X)
    cost32, grads32 = fast.cost_and_grad(params32, X.astype(np.float32))
    g64, g32 = sae.pack(grads64), sae.pack(grads32).astype(np.float64)
    big = np.abs(g64) >= 1e-3 * np.abs(g64).max()
    row = {
        "shape": f"{m} x {n_visible} -> {n_hidden}",
        "cost": abs(cost32 - cost64) / abs(cost64),
        "grad": np.linalg.norm(g32 - g64) / np.linalg.norm(g64),
        "entry": float(np.max(np.abs(g32[big] - g64[big]) / np.abs(g64[big]))),
    }
    for name in sae.PARAM_NAMES:
        a, b = grads32[name].astype(np.float64), grads64[name]
        row[name] = np.linalg.norm(a - b) / np.linalg.norm(b)
    return row


def gradient_check_by_dtype(seed, eps_values=(1e-4, 1e-3, 1e-2)):
    """The notes' gradient check, ||num - grad|| / ||num + grad||, in each dtype and step.

    A small problem (10 examples, 8 -> 5, init_params weights, rho 0.1) as in
    the tests; the central differences are taken in the dtype of the model.
    """
    results = {}
    for dtype in (np.float64, np.float32):
        params, X = make_problem(10, 8, 5, dtype, seed)
        theta = sae.pack(params)
        _, grads = fast.cost_and_grad(params, X, rho=0.1)
        for eps in eps_values:
            numerical = numerical_gradient(
                lambda t: fast.cost_and_grad(sae.unpack(t, 8, 5), X, rho=0.1)[0], theta.copy(), eps=eps)
            results[np.dtype(dtype).name, eps] = relative_difference(numerical, sae.pack(grads))
    return results


def accuracy_table(rows):
    lines = ["| shape | cost | gradient (all) | W1 | b1 | W2 | b2 | worst entry (>= 1e-3 max) |",
             "|" + "---|" * 8]
    for r in rows:
        lines.append(f"| {r['shape']} | {r['cost']:.1e} | {r['grad']:.1e} | {r['W1']:.1e} | "
                     f"{r['b1']:.1e} | {r['W2']:.1e} | {r['b2']:.1e} | {r['entry']:.1e} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Training run
# ---------------------------------------------------------------------------


def time_training(runs, data_dir, extra_args):
    """Time ``runs`` runs of train_mnist.py; returns 0, or 1 if a run failed (or None if skipped)."""
    script = ROOT / "train_mnist.py"
    if not script.exists():
        print(f"\n--train: {script.name} is not in this tree ({ROOT}); skipped.")
        return None
    if not data_dir.exists():
        print(f"\n--train: the MNIST directory {data_dir} does not exist; skipped.")
        return None
    seconds = []
    for run in range(runs):
        with tempfile.TemporaryDirectory(prefix="bench-train-") as out_dir:
            command = [sys.executable, str(script), "--data-dir", str(data_dir),
                       "--out-dir", out_dir, *shlex.split(extra_args)]
            start = time.perf_counter()
            done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
            seconds.append(time.perf_counter() - start)
        if done.returncode != 0:
            print(f"\n--train: {shlex.join(command)} failed (exit {done.returncode}):\n"
                  f"{done.stderr[-2000:]}", flush=True)
            print(f"error: --train: train_mnist.py run {run + 1} failed with exit status "
                  f"{done.returncode} (exit status 1)", file=sys.stderr, flush=True)
            return 1
        print(f"train_mnist.py run {run + 1}/{runs}: {seconds[-1]:.1f} s", flush=True)
    shown = shlex.join(["python", "train_mnist.py", "--data-dir", str(data_dir),
                        "--out-dir", "<tmp>", *shlex.split(extra_args)])
    print(f"\n`{shown}`: median {statistics.median(seconds):.1f} s wall time over "
          f"{runs} run(s) (min {min(seconds):.1f}, max {max(seconds):.1f})")
    return 0


# ---------------------------------------------------------------------------


def main(argv=None):
    """Run the benchmark; returns the exit status (0, or 1 if a timed training run failed)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    check_train_args(parser, args)
    shapes = args.shapes or [parse_shape(s) for s in DEFAULT_SHAPES]
    repeats = args.repeats or (3 if args.quick else 9)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 2)
    loop_rows = args.loop_rows or (50 if args.quick else 300)

    if args.blas_threads is not None and not set_blas_threads(args.blas_threads):
        print("--blas-threads: could not find OpenBLAS's set_num_threads; BLAS left as it is.")
    print("Machine:")
    print("\n".join(machine_lines()))
    if args.models:
        shapes = args.shapes or [parse_shape(s) for s in DEFAULT_MODEL_SHAPES]
        print(f"\nOne cost-and-gradient call of {', '.join(args.models)}, readable (modern_sae) and "
              f"tuned (fast), median of {repeats} calls "
              f"after {warmup} warm-up, alternating with the five-product floor.\n", flush=True)
        rows = [row for m, n_visible, n_hidden in shapes for dtype in args.dtypes
                for row in bench_models_row(args.models, m, n_visible, n_hidden, np.dtype(dtype),
                                            repeats=repeats, warmup=warmup, seed=args.seed)]
        print(models_table(rows))
        return 0
    print(f"\ncost_and_grad(penalty='kl', decoder='sigmoid', defaults otherwise), readable "
          f"(sparse_autoencoder) and tuned (fast); "
          f"median of {repeats} calls after {warmup} warm-up, alternating with the floor; "
          f"per-example loop on {loop_rows} rows, scaled to m; GFLOP/s = 10 m n_visible n_hidden "
          f"/ time. \"CPU used by others\": the share of all cores that other programs used "
          f"while the row was timed (? if too short to tell); near 0% means the timings "
          f"can be trusted.\n", flush=True)
    rows = []
    for m, n_visible, n_hidden in shapes:
        for dtype in args.dtypes:
            row = bench_row(m, n_visible, n_hidden, np.dtype(dtype), repeats=repeats,
                            warmup=warmup, loop_rows=loop_rows, seed=args.seed)
            rows.append(row)
            print(f"  done {row['shape']} {row['dtype']}: readable {row['readable_ratio']:.2f}x, "
                  f"tuned {row['ratio']:.2f}x floor",
                  file=sys.stderr, flush=True)
    print(markdown_table(rows))
    if args.accuracy:
        print("\nfloat32 vs float64, relative difference of one fast.cost_and_grad call "
              "(same data and init_params weights, rounded to float32):\n")
        print(accuracy_table([float32_accuracy(m, v, h, args.seed) for m, v, h in shapes]))
        checks = gradient_check_by_dtype(args.seed)
        print("\nGradient check (10 examples, 8 -> 5), ||num - grad|| / ||num + grad||:\n")
        print("| dtype | " + " | ".join(f"eps = {eps:g}" for _, eps in list(checks)[:3]) + " |")
        print("|---|---|---|---|")
        for dtype in ("float64", "float32"):
            print(f"| {dtype} | " + " | ".join(f"{v:.1e}" for (d, _), v in checks.items() if d == dtype)
                  + " |")
    if args.train and time_training(args.train_runs, args.data_dir, args.train_args):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
