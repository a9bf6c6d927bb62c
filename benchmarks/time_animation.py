"""How much --animate costs: one training run, timed, with or without recording.

    python -m benchmarks.time_animation patches [--animate]
    python -m benchmarks.time_animation mnist --data-dir ../shared/data/mnist [--animate]

Runs the script's own code (``train_patches.main`` or ``train_mnist.main``,
``--quiet``, into a temporary folder) in this process and prints one line:
the script, whether it animated, the training seconds, the seconds spent
drawing the GIF after training, and the seconds spent inside the recorder
during training (summed over its calls). Run it in a fresh process per run,
alternating with and without --animate (docs/animation.md has the loop and
the measured numbers). Timing only: nothing here is used by training.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")          # as the training scripts set

from saelab.figures import animation  # noqa: E402
from saelab.checks.argtypes import nonempty_path  # noqa: E402
from saelab import experiment  # noqa: E402
import train_mnist  # noqa: E402
import train_patches  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Time one training run with or without --animate.")
    parser.add_argument("script", choices=("patches", "mnist"), help="which training script to run")
    parser.add_argument("--animate", action="store_true", help="record and draw the GIF")
    parser.add_argument("--data-dir", type=nonempty_path, default=None, help="MNIST folder (mnist only)")
    return parser.parse_args(argv)


def timed_run(script, animate, data_dir=None):
    """(train_seconds, drawing_seconds, recorder_seconds) of one default run of ``script``."""
    spent, summaries = [0.0], []
    call, run = animation.FilterRecorder.__call__, experiment.run

    def timed_call(self, step):
        start = time.perf_counter()
        result = call(self, step)
        spent[0] += time.perf_counter() - start
        return result

    def keep_summary(*args, **kwargs):
        result = run(*args, **kwargs)
        summaries.append(result[1])
        return result

    with tempfile.TemporaryDirectory(prefix="time-animation-") as out_dir:
        options = ["--quiet", "--out-dir", out_dir] + (["--animate"] if animate else [])
        if script == "mnist" and data_dir:
            options += ["--data-dir", str(data_dir)]
        main = train_mnist.main if script == "mnist" else train_patches.main
        animation.FilterRecorder.__call__, experiment.run = timed_call, keep_summary
        try:
            with open(os.devnull, "w") as sink:
                stdout, sys.stdout = sys.stdout, sink
                try:
                    main(options)
                finally:
                    sys.stdout = stdout
        finally:
            animation.FilterRecorder.__call__, experiment.run = call, run
    summary = summaries[0]
    return summary["train_seconds"], summary.get("animation_seconds", 0.0), spent[0]


def main(argv=None):
    args = parse_args(argv)
    train_s, drawing_s, recorder_s = timed_run(args.script, args.animate, args.data_dir)
    print(f"{args.script} {'--animate' if args.animate else 'plain'} train {train_s:.3f} s, "
          f"drawing {drawing_s:.3f} s, inside the recorder {recorder_s:.4f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
