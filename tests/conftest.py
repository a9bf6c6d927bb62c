"""Shared test setup: the repository root on sys.path, and where real MNIST lives."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Real MNIST for the real-data tests: $MNIST_DIR, else ../shared/data/mnist beside the repo.
MNIST_DIR = Path(os.environ.get("MNIST_DIR", ROOT.parent / "shared" / "data" / "mnist"))

# Hypothesis: the same examples on every run by default, so that CI (and the
# README's test command) gives the same verdict each time; set
# HYPOTHESIS_PROFILE=explore to draw fresh random examples when hunting for
# new failures (docs/reliability.md).
from hypothesis import settings  # noqa: E402

settings.register_profile("repeatable", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
