"""Figures: learned filters, training curve, rho_hat histogram, reconstructions.

Matplotlib is imported inside the functions that draw (never by the model),
and only its Agg canvas is used: no display, no pyplot global state. Every
file is written atomically (temporary file, then rename).

    filter_grid(W1, tile_shape)                  the image array of the grid (pure)
    scaled_filter_grid(W1, tile_shape, center, scale)  the same with a given centre and scales
    save_filter_grid(W1, path, tile_shape)       UFLDL's display_network, as a PNG
    save_training_curve(history, path)           J per iteration (L-BFGS) or epoch (Adam)
    save_rho_hat_histogram(rho_hat, path, rho)   histogram of the hidden units' rho_hat
    save_reconstructions(X, X_hat, path, tile_shape)  originals above reconstructions
    save_self_taught_figure(accuracies, confusion, path)  accuracy of features vs pixels,
                                                 and a confusion matrix
    save_confusion_matrix(confusion, path)       a confusion matrix on its own
    save_accuracy_bars(accuracies, path, reference)  accuracy per stage, reported values marked
"""

from __future__ import annotations

import math

import numpy as np

from saelab.checks.validation import check_output_path, check_tile_shape
from saelab.files.atomic import atomic_write

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


def _check_filters(W1, tile_shape):
    W1 = np.asarray(W1, dtype=np.float64)
    if W1.ndim != 2:
        raise ValueError(f"W1: expected a 2-D array (n_hidden, n_visible), got shape {W1.shape}")
    check_tile_shape(tile_shape, W1.shape[1], "W1")
    return W1


def filter_grid(W1, tile_shape):
    """UFLDL's display_network as an array in [-1, 1].

    W1 (n_hidden, n_visible): row j, the weights into hidden unit j, becomes
    one tile of ``tile_shape`` (h, w), h * w = n_visible. As in
    display_network, the mean of all of W1 is subtracted, then each tile is
    divided by its own largest absolute value (so every tile uses the whole
    grey range and 0 stays mid-grey); tiles sit on a near-square grid with
    1-pixel black (-1) separators.
    """
    W1 = _check_filters(W1, tile_shape)
    center = W1.mean()
    return scaled_filter_grid(W1, tile_shape, center, np.abs(W1 - center).max(axis=1, keepdims=True))


def scaled_filter_grid(W1, tile_shape, center, scale):
    """The grid of ``filter_grid`` with a given centre and scale: tile j is (W1[j] - center) / scale[j].

    center: a number; scale: (n_hidden, 1) positive numbers (zeros count as
    1, so an all-zero tile stays 0). The animation (saelab/figures/animation.py) passes
    the same centre and scales for every frame, so tiles do not flicker.
    """
    W1 = _check_filters(W1, tile_shape)
    scale = np.array(scale, dtype=np.float64)                # (n_hidden, 1), a copy
    scale[scale == 0] = 1
    _, n_cols = grid_shape(W1.shape[0])
    return tile_grid((W1 - center) / scale, tile_shape, n_cols)


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
    Returns the path. A tile_shape that is not two integers >= 1 whose
    product is W1's width, a bad scale or path raise naming the argument.
    """
    from matplotlib.image import imsave

    path = check_output_path("path", path)
    image = filter_grid(W1, tile_shape)
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, np.integer))
                              or scale < 1):
        raise ValueError(f"scale: expected None or an integer >= 1, got {scale!r}")
    scale = auto_scale(image.shape) if scale is None else int(scale)
    with atomic_write(path) as handle:
        imsave(handle, upscale(image, scale), cmap="gray", vmin=-1, vmax=1, format="png")
    return path


# ---------------------------------------------------------------------------
# Matplotlib figures (Agg canvas, no pyplot)
# ---------------------------------------------------------------------------


def new_figure(size_pixels):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width, height = size_pixels
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path):
    with atomic_write(path) as handle:
        figure.savefig(handle, format="png", dpi=DPI)
    return path


def save_training_curve(history, path, size_pixels=(800, 500)):
    """J against L-BFGS iteration (or Adam epoch, with each mini-batch's J faintly).

    history: as returned by ``autoencoder.lbfgs`` or ``autoencoder.adam``. The y axis is
    logarithmic when the cost spans more than a factor of 10. Writes a PNG
    of exactly ``size_pixels`` (width, height). Returns the path.
    """
    cost = np.asarray(history["cost"], dtype=np.float64)
    if cost.size == 0 or not np.all(np.isfinite(cost)):
        raise ValueError("history: expected a non-empty list of finite costs under 'cost'")
    figure = new_figure(size_pixels)
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
    return save_figure(figure, path)


def save_rho_hat_histogram(rho_hat, path, rho=None, size_pixels=(800, 500)):
    """Histogram of rho_hat (n_hidden,), with the target rho and the mean marked.

    rho None (L1 or no penalty: no target) draws only the mean. Writes a PNG
    of exactly ``size_pixels``. Returns the path.
    """
    from matplotlib.ticker import MaxNLocator

    rho_hat = np.asarray(rho_hat, dtype=np.float64)
    if rho_hat.ndim != 1 or rho_hat.size == 0 or not np.all(np.isfinite(rho_hat)):
        raise ValueError(f"rho_hat: expected a non-empty 1-D array of finite values, got shape {rho_hat.shape}")
    figure = new_figure(size_pixels)
    axes = figure.add_subplot()
    # Values that differ by a few ulps (units all alike, e.g. after an enormous lam) leave no room
    # for distinct bin edges, and NumPy refuses; such a spread is drawn as one bar, centred.
    lo, hi = float(rho_hat.min()), float(rho_hat.max())
    bin_range = None
    if hi - lo <= 1e-9 * max(abs(lo), abs(hi), 1e-300):
        centre = (lo + hi) / 2
        half = max(1e-6 * abs(centre), 1e-300)
        bin_range = (centre - half, centre + half)
    axes.hist(rho_hat, bins=min(40, max(5, rho_hat.size // 4)), range=bin_range, color="tab:gray",
              edgecolor="white")
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
    return save_figure(figure, path)


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
    tile_shape = check_tile_shape(tile_shape, X.shape[1], "X")
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
    figure = new_figure(size_pixels)
    axes = figure.add_subplot()
    axes.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    h = tile_shape[0]
    axes.set_yticks([1 + h / 2, 2 + 1.5 * h], ["original", "reconstruction"])
    axes.set_xticks([])
    axes.set_title("Originals and their reconstructions a3")
    figure.tight_layout()
    return save_figure(figure, path)


def _check_confusion(confusion, class_names):
    """(confusion as an array, k class names as str): a square array of non-negative integer
    counts and k names (default 0 .. k-1); else a ValueError naming the argument."""
    confusion = np.asarray(confusion)
    if (confusion.ndim != 2 or confusion.shape[0] != confusion.shape[1] or confusion.size == 0
            or confusion.dtype.kind not in "iu" or confusion.min() < 0):
        raise ValueError(f"confusion: expected a square array of non-negative integer counts, got "
                         f"{confusion.dtype} {confusion.shape}")
    k = confusion.shape[0]
    class_names = [str(c) for c in (range(k) if class_names is None else class_names)]
    if len(class_names) != k:
        raise ValueError(f"class_names: expected {k} names, got {len(class_names)}")
    return confusion, class_names


def save_self_taught_figure(accuracies, confusion, path, class_names=None, size_pixels=(1100, 480)):
    """Left: test accuracy of each classifier on each evaluation set; right: a confusion matrix.

    accuracies: {evaluation set: {classifier: accuracy in [0, 1]}}, every
        evaluation set with the same classifiers (e.g. "learned features",
        "raw pixels"); drawn as labelled points (no bars: the interesting
        differences are a few tenths of a percent near 100%).
    confusion: (k, k) counts, rows true classes, columns predicted ones (as
        ``softmax.confusion_matrix``); each cell shows its count, shaded by
        the fraction of its row.
    class_names: k labels for the confusion matrix's axes (default 0 .. k-1).
    Writes a PNG of exactly ``size_pixels``. Returns the path.
    """
    if not isinstance(accuracies, dict) or not accuracies:
        raise ValueError("accuracies: expected a non-empty dict {evaluation set: {classifier: accuracy}}")
    classifiers = list(next(iter(accuracies.values())))
    for set_name, row in accuracies.items():
        if not isinstance(row, dict) or list(row) != classifiers:
            raise ValueError(f"accuracies[{set_name!r}]: expected the classifiers {classifiers}, got {row!r}")
        for value in row.values():
            if not (isinstance(value, (int, float, np.floating)) and 0 <= value <= 1):
                raise ValueError(f"accuracies[{set_name!r}]: expected accuracies in [0, 1], got {row!r}")
    confusion, class_names = _check_confusion(confusion, class_names)
    k = confusion.shape[0]

    figure = new_figure(size_pixels)
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [1.3, 1]})

    set_names = list(accuracies)
    x = np.arange(len(set_names))
    offsets = np.linspace(-0.12, 0.12, len(classifiers)) if len(classifiers) > 1 else [0.0]
    markers = "osD^v"
    for c, (classifier, offset) in enumerate(zip(classifiers, offsets)):
        values = np.array([100 * accuracies[s][classifier] for s in set_names])
        left.plot(x + offset, values, markers[c % len(markers)], markersize=9, label=classifier)
        for xi, value in zip(x + offset, values):
            left.annotate(f"{value:.2f}%", (xi, value), textcoords="offset points", xytext=(10, -4),
                          fontsize=9)
    all_values = [100 * v for row in accuracies.values() for v in row.values()]
    span = max(max(all_values) - min(all_values), 0.5)
    left.set_ylim(max(0.0, min(all_values) - 0.4 * span), min(100.0, max(all_values) + 0.4 * span))
    left.set_xlim(-0.6, len(set_names) - 0.4)
    left.set_xticks(x, set_names)
    left.set_ylabel("test accuracy (%)")
    left.set_title("Softmax regression: learned features vs raw pixels")
    left.grid(True, axis="y", alpha=0.3)
    left.legend(loc="lower left")

    row_totals = confusion.sum(axis=1, keepdims=True)
    fractions = confusion / np.where(row_totals > 0, row_totals, 1)
    right.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            right.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=9,
                       color="white" if fractions[i, j] > 0.5 else "black")
    right.set_xticks(range(k), class_names)
    right.set_yticks(range(k), class_names)
    right.set_xlabel("predicted")
    right.set_ylabel("true")
    right.set_title(f"Confusion matrix, learned features\n({int(confusion.sum())} images, "
                    f"{int(np.trace(confusion))} correct)")
    figure.tight_layout()
    return save_figure(figure, path)


def save_confusion_matrix(confusion, path, class_names=None, title=None, size_pixels=(620, 560)):
    """A confusion matrix on its own: each cell its count, shaded by the fraction of its row.

    confusion: (k, k) non-negative integer counts, rows true classes, columns
        predicted ones (as ``softmax.confusion_matrix``).
    class_names: k labels for the axes (default 0 .. k-1).
    title: the first line of the title (default "Confusion matrix"); the
        number of examples and of correct ones is added below it.
    Writes a PNG of exactly ``size_pixels``. Returns the path.
    """
    confusion, class_names = _check_confusion(confusion, class_names)
    k = confusion.shape[0]
    figure = new_figure(size_pixels)
    axes = figure.add_subplot()
    row_totals = confusion.sum(axis=1, keepdims=True)
    fractions = confusion / np.where(row_totals > 0, row_totals, 1)
    axes.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            axes.text(j, i, str(confusion[i, j]), ha="center", va="center", fontsize=9,
                      color="white" if fractions[i, j] > 0.5 else "black")
    axes.set_xticks(range(k), class_names)
    axes.set_yticks(range(k), class_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    total, correct = int(confusion.sum()), int(np.trace(confusion))
    axes.set_title(f"{title or 'Confusion matrix'}\n({total} examples, {correct} correct, "
                   f"{total - correct} errors)")
    figure.tight_layout()
    return save_figure(figure, path)


def save_accuracy_bars(accuracies, path, reference=None, title=None, size_pixels=(720, 520)):
    """One labelled bar per stage (e.g. before and after fine-tuning), reference values marked.

    accuracies: {stage: accuracy in [0, 1]}, drawn left to right in order.
    reference: {stage: accuracy} reported elsewhere (e.g. UFLDL's), each
        drawn as a red dash across its stage's bar with its value; stages
        without a bar are skipped. title: the axes' title.
    Writes a PNG of exactly ``size_pixels``. Returns the path.
    """
    reference = {} if reference is None else reference
    for name, values in (("accuracies", accuracies), ("reference", reference)):
        if not isinstance(values, dict) or (name == "accuracies" and not values):
            raise ValueError(f"{name}: expected a{' non-empty' if name == 'accuracies' else ''} "
                             f"dict {{stage: accuracy in [0, 1]}}, got {values!r:.60}")
        for stage, value in values.items():
            if not (isinstance(value, (int, float, np.floating)) and 0 <= value <= 1):
                raise ValueError(f"{name}[{stage!r}]: expected an accuracy in [0, 1], got {value!r}")
    figure = new_figure(size_pixels)
    axes = figure.add_subplot()
    stages = list(accuracies)
    x = np.arange(len(stages))
    values = np.array([100 * accuracies[stage] for stage in stages])
    axes.bar(x, values, width=0.55, color="tab:blue", alpha=0.8, zorder=2)
    for xi, value in zip(x, values):
        axes.annotate(f"{value:.2f}%", (xi, value), textcoords="offset points", xytext=(0, 4),
                      ha="center", va="bottom", fontsize=11, fontweight="bold")
    marked = False
    for xi, stage in zip(x, stages):
        if stage in reference:
            value = 100 * reference[stage]
            axes.hlines(value, xi - 0.36, xi + 0.36, colors="tab:red", linewidth=2.5, zorder=3,
                        label=None if marked else "UFLDL, reported")
            axes.annotate(f"{value:.1f}%", (xi + 0.36, value), textcoords="offset points",
                          xytext=(4, -4), ha="left", va="center", fontsize=9, color="tab:red")
            marked = True
    axes.set_xticks(x, stages)
    axes.set_xlim(-0.6, len(stages) - 0.4)
    axes.set_ylim(0, 118)                                   # room above 100% for the legend
    axes.set_ylabel("test accuracy (%)")
    axes.grid(True, axis="y", alpha=0.3, zorder=0)
    if title:
        axes.set_title(title)
    if marked:
        axes.legend(loc="upper left")
    figure.tight_layout()
    return save_figure(figure, path)
