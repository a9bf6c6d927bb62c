"""Figures: learned filters, training curve, rho_hat histogram, reconstructions.

Matplotlib is imported inside the functions that draw (never by the model),
and only its Agg canvas is used: no display, no pyplot global state. Every
file is written atomically (temporary file, then rename).

    filter_grid(W1, tile_shape)                  the image array of the grid (pure)
    save_filter_grid(W1, path, tile_shape)       UFLDL's display_network, as a PNG
    save_training_curve(history, path)           J per iteration (L-BFGS) or epoch (Adam)
    save_rho_hat_histogram(rho_hat, path, rho)   histogram of the hidden units' rho_hat
    save_reconstructions(X, X_hat, path, tile_shape)  originals above reconstructions
"""

from __future__ import annotations

import math

import numpy as np

from atomic import atomic_write

DPI = 100


# ---------------------------------------------------------------------------
# Tile grids (pure NumPy)
# ---------------------------------------------------------------------------


def grid_shape(n_tiles):
    """(rows, cols) of a near-square grid: cols = ceil(sqrt(n)), rows = ceil(n / cols)."""
    if n_tiles < 1:
        raise ValueError(f"n_tiles: expected at least 1 tile, got {n_tiles}")
    cols = math.ceil(math.sqrt(n_tiles))
    return math.ceil(n_tiles / cols), cols


def tile_grid(tiles, tile_shape, n_cols, *, background=-1.0, separator=1):
    """Arrange tiles (k, h*w) as a grid image with ``separator``-pixel borders.

    Tile i goes to row i // n_cols, column i % n_cols. The result has shape
    (rows*h + (rows+1)*separator, n_cols*w + (n_cols+1)*separator); borders
    and empty cells hold ``background``.
    """
    h, w = tile_shape
    tiles = np.asarray(tiles, dtype=np.float64)
    if tiles.ndim != 2 or tiles.shape[1] != h * w:
        raise ValueError(f"tiles: expected shape (k, {h * w}) for tile_shape {tuple(tile_shape)}, "
                         f"got {tiles.shape}")
    n_rows = math.ceil(tiles.shape[0] / n_cols)
    s = separator
    image = np.full((n_rows * h + (n_rows + 1) * s, n_cols * w + (n_cols + 1) * s), background)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, n_cols)
        top, left = s + r * (h + s), s + c * (w + s)
        image[top:top + h, left:left + w] = tile.reshape(h, w)
    return image


def _check_tile_shape(tile_shape, width, what):
    try:
        h, w = (int(v) for v in tile_shape)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"tile_shape: expected (height, width), got {tile_shape!r}") from exc
    if h < 1 or w < 1 or h * w != width:
        raise ValueError(f"tile_shape: {tile_shape!r} has {h * w} pixels, but {what} has {width} "
                         f"columns")
    return h, w


def filter_grid(W1, tile_shape):
    """UFLDL's display_network as an array in [-1, 1].

    W1 (n_hidden, n_visible): row j, the weights into hidden unit j, becomes
    one tile of ``tile_shape`` (h, w), h * w = n_visible. As in
    display_network, the mean of all of W1 is subtracted, then each tile is
    divided by its own largest absolute value (so every tile uses the whole
    grey range and 0 stays mid-grey); tiles sit on a near-square grid with
    1-pixel black (-1) separators.
    """
    W1 = np.asarray(W1, dtype=np.float64)
    if W1.ndim != 2:
        raise ValueError(f"W1: expected a 2-D array (n_hidden, n_visible), got shape {W1.shape}")
    tile_shape = _check_tile_shape(tile_shape, W1.shape[1], "W1")
    centred = W1 - W1.mean()
    scale = np.abs(centred).max(axis=1, keepdims=True)       # (n_hidden, 1)
    scale[scale == 0] = 1                                    # an all-zero tile stays 0
    _, n_cols = grid_shape(W1.shape[0])
    return tile_grid(centred / scale, tile_shape, n_cols)


def upscale(image, factor):
    """Each pixel becomes a factor x factor block (keeps tiles crisp in viewers)."""
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def auto_scale(image_shape, target=800):
    """The integer factor that brings the larger side of an image to about ``target`` pixels."""
    return max(1, math.ceil(target / max(image_shape)))


def save_filter_grid(W1, path, tile_shape, scale=None):
    """Write ``filter_grid(W1, tile_shape)`` as a grey PNG, each pixel ``scale`` x ``scale``.

    scale None: chosen so that the image is about 800 pixels on its larger
    side. The PNG's size is exactly the grid's size times ``scale``.
    Returns the path.
    """
    from matplotlib.image import imsave

    image = filter_grid(W1, tile_shape)
    scale = auto_scale(image.shape) if scale is None else int(scale)
    with atomic_write(path) as handle:
        imsave(handle, upscale(image, scale), cmap="gray", vmin=-1, vmax=1, format="png")
    return path


# ---------------------------------------------------------------------------
# Matplotlib figures (Agg canvas, no pyplot)
# ---------------------------------------------------------------------------


def _new_figure(size_pixels):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = size_pixels
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def _save_figure(figure, path):
    with atomic_write(path) as handle:
        figure.savefig(handle, format="png", dpi=DPI)
    return path


def save_training_curve(history, path, size_pixels=(800, 500)):
    """J against L-BFGS iteration (or Adam epoch, with each mini-batch's J faintly).

    history: as returned by ``train.lbfgs`` or ``train.adam``. The y axis is
    logarithmic when the cost spans more than a factor of 10. Writes a PNG
    of exactly ``size_pixels`` (width, height). Returns the path.
    """
    cost = np.asarray(history["cost"], dtype=np.float64)
    if cost.size == 0 or not np.all(np.isfinite(cost)):
        raise ValueError("history: expected a non-empty list of finite costs under 'cost'")
    figure = _new_figure(size_pixels)
    axes = figure.add_subplot()
    if history.get("optimizer") == "adam":
        step_cost = np.asarray(history.get("step_cost", []), dtype=np.float64)
        if step_cost.size:
            steps = np.arange(1, step_cost.size + 1) / history["steps_per_epoch"]
            axes.plot(steps, step_cost, color="tab:blue", alpha=0.25, linewidth=0.8,
                      label="J on each mini-batch")
        axes.plot(history["epoch"], cost, "o-", color="tab:blue", label="J on all examples")
        axes.set_xlabel("epoch")
        axes.legend()
        all_costs = np.concatenate([cost, step_cost[np.isfinite(step_cost)]])
    else:
        axes.plot(history["iteration"], cost, color="tab:blue")
        axes.set_xlabel("L-BFGS iteration")
        all_costs = cost
    if all_costs.min() > 0 and all_costs.max() / all_costs.min() > 10:
        axes.set_yscale("log")
    axes.set_ylabel("cost J")
    axes.set_title(f"Training curve: final J = {cost[-1]:.5g}")
    axes.grid(True, which="both", alpha=0.3)
    figure.tight_layout()
    return _save_figure(figure, path)


def save_rho_hat_histogram(rho_hat, path, rho=None, size_pixels=(800, 500)):
    """Histogram of rho_hat (n_hidden,), with the target rho and the mean marked.

    rho None (L1 or no penalty: no target) draws only the mean. Writes a PNG
    of exactly ``size_pixels``. Returns the path.
    """
    from matplotlib.ticker import MaxNLocator

    rho_hat = np.asarray(rho_hat, dtype=np.float64)
    if rho_hat.ndim != 1 or rho_hat.size == 0 or not np.all(np.isfinite(rho_hat)):
        raise ValueError(f"rho_hat: expected a non-empty 1-D array of finite values, got shape {rho_hat.shape}")
    figure = _new_figure(size_pixels)
    axes = figure.add_subplot()
    axes.hist(rho_hat, bins=min(40, max(5, rho_hat.size // 4)), color="tab:gray", edgecolor="white")
    axes.axvline(rho_hat.mean(), color="tab:blue", linestyle="--",
                 label=f"mean rho_hat = {rho_hat.mean():.4g}")
    if rho is not None:
        axes.axvline(rho, color="tab:red", linewidth=2, label=f"target rho = {rho:.4g}")
    axes.set_xlabel("rho_hat_j (average activation of hidden unit j)")
    axes.set_ylabel("number of hidden units")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_title(f"Average activations of the {rho_hat.size} hidden units")
    axes.legend()
    figure.tight_layout()
    return _save_figure(figure, path)


def reconstruction_grid(X, X_hat, tile_shape, value_range=(0.0, 1.0)):
    """Two rows of tiles: X's rows on top, X_hat's below, as an array in [0, 1].

    value_range (lo, hi): both rows are mapped with (v - lo) / (hi - lo) and
    clipped (right for pixels in [0, 1]); None: each original and its
    reconstruction share the original's own min and max (for patches).
    Separators are 0.4 (dark grey, visible against black backgrounds).
    """
    X = np.asarray(X, dtype=np.float64)
    X_hat = np.asarray(X_hat, dtype=np.float64)
    if X.ndim != 2 or X.shape != X_hat.shape:
        raise ValueError(f"X, X_hat: expected two 2-D arrays of one shape, got {X.shape} and {X_hat.shape}")
    tile_shape = _check_tile_shape(tile_shape, X.shape[1], "X")
    if value_range is None:
        lo = X.min(axis=1, keepdims=True)                     # (k, 1)
        span = X.max(axis=1, keepdims=True) - lo
    else:
        lo, hi = value_range
        span = np.float64(hi - lo)
    span = np.where(span > 0, span, 1.0)
    tiles = np.clip(np.concatenate([(X - lo) / span, (X_hat - lo) / span]), 0, 1)
    return tile_grid(tiles, tile_shape, X.shape[0], background=0.4)


def save_reconstructions(X, X_hat, path, tile_shape, value_range=(0.0, 1.0), size_pixels=None):
    """Originals (top row) above their reconstructions (bottom row), as a PNG.

    X, X_hat: (k, n_visible), k examples and their reconstructions a3.
    size_pixels: (width, height); default 90 pixels per example wide,
    260 high. Returns the path.
    """
    image = reconstruction_grid(X, X_hat, tile_shape, value_range)
    if size_pixels is None:
        size_pixels = (90 * X.shape[0] + 140, 260)
    figure = _new_figure(size_pixels)
    axes = figure.add_subplot()
    axes.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    h = tile_shape[0]
    axes.set_yticks([1 + h / 2, 2 + 1.5 * h], ["original", "reconstruction"])
    axes.set_xticks([])
    axes.set_title("Originals and their reconstructions a3")
    figure.tight_layout()
    return _save_figure(figure, path)
