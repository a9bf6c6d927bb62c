"""Argument types for the scripts' argparse options: one clear line on bad input.

Each function takes the option's text and returns the value, or raises
``argparse.ArgumentTypeError`` saying what was expected and what came;
argparse adds the option's name and exits with status 2. No NumPy, so that
any script can use them.
"""

from __future__ import annotations

import argparse
import math


def positive_int(text):
    value = _parse(text, int, "a positive integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def nonnegative_int(text):
    value = _parse(text, int, "a non-negative integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def positive_float(text):
    value = _parse(text, float, "a positive number")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def nonnegative_float(text):
    value = _parse(text, float, "a number >= 0")
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def open_unit_float(text):
    value = _parse(text, float, "a number strictly between 0 and 1")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1, got {text!r}")
    return value


def nonempty_path(text):
    """A path given as a non-empty text: "" would silently mean the current folder."""
    from pathlib import Path

    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a folder name, got {text!r}")
    if "\0" in text:
        raise argparse.ArgumentTypeError(f"a path cannot hold a NUL character, got {text!r}")
    return Path(text)


def _parse(text, kind, expected):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
