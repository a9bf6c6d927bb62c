"""Shared test setup: the repository root on sys.path, and where real MNIST lives."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Real MNIST for the real-data tests: $MNIST_DIR, else ../shared/data/mnist beside the repo.
MNIST_DIR = Path(os.environ.get("MNIST_DIR", ROOT.parent / "shared" / "data" / "mnist"))
