"""How localized a learned filter is: the spatial spread of its energy (docs/patches.md).

    filter_spread(W, tile_shape)      (n_filters,) spreads, 1.0 = energy spread evenly over the tile

The notes' edge detectors are localized: each tile is mostly grey, with one
short edge somewhere in it. A grating that runs across the whole tile is
not. ``filter_spread`` puts a number on the difference, one per filter:

1. the filter (a row of W, reshaped to the tile) minus its own mean: the
   patches' means are removed before training, so that part of a filter
   only shifts its unit's bias;
2. its energy at each pixel, e = w^2 / sum(w^2), which sums to 1;
3. the centre of that energy, (y_c, x_c) = sum of e * (y, x);
4. the spread around the centre, s = sqrt(sum of e * ((y - y_c)^2 + (x - x_c)^2)),
   in pixels;
5. divided by the spread of a tile whose energy is the same at every pixel,
   sqrt((h^2 - 1) / 12 + (w^2 - 1) / 12).

So 1.0 is a filter whose energy covers the tile evenly, like a grating; a
filter whose energy fills one quarter of the tile (a square of half the
side) gives about 0.5, two neighbouring pixels of opposite signs 0.15 on
an 8 x 8 tile. Energy gathered in opposite corners can give more than 1
(less than sqrt(3)). A filter that is zero after step 1 has no location:
its spread is NaN.
"""

from __future__ import annotations

import numbers

import numpy as np


def filter_spread(W, tile_shape) -> np.ndarray:
    """Spread of each row of W's energy around its centre, as a fraction of an even tile's.

    W: (n_filters, h * w) real, finite (W1, or W1 @ W_zca for the ZCA
    variant: the filters as drawn). tile_shape: (h, w), h * w >= 2.
    Returns (n_filters,) float64: NaN for a filter that is constant.
    """
    if (not isinstance(tile_shape, (tuple, list)) or len(tile_shape) != 2
            or not all(isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 1
                       for n in tile_shape)):
        raise ValueError(f"tile_shape: expected (height, width), two positive integers, got {tile_shape!r}")
    h, w = (int(n) for n in tile_shape)
    if h * w < 2:
        raise ValueError(f"tile_shape: a tile of {h} x {w} pixel has no spread; expected 2 pixels or more")
    try:
        W = np.asarray(W, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"W: expected a 2-D array of real numbers (n_filters, {h * w})") from exc
    if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] != h * w:
        raise ValueError(f"W: expected shape (n_filters, {h * w}) for tile_shape {(h, w)}, got {W.shape}")
    if not np.isfinite(W).all():
        raise ValueError("W: expected finite values, found NaN or infinity")
    centred = W - W.mean(axis=1, keepdims=True)                     # (n_filters, h*w)
    total = np.sum(centred ** 2, axis=1, keepdims=True)             # (n_filters, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        energy = centred ** 2 / total                               # rows sum to 1 (NaN if total is 0)
    y, x = (grid.ravel().astype(np.float64) for grid in np.indices((h, w)))   # (h*w,) each
    y_c, x_c = energy @ y, energy @ x                               # (n_filters,) each
    variance = energy @ (y ** 2) - y_c ** 2 + energy @ (x ** 2) - x_c ** 2
    even = np.sqrt((h * h - 1) / 12 + (w * w - 1) / 12)
    return np.sqrt(np.clip(variance, 0, None)) / even
