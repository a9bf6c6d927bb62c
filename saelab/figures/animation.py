"""Watch the filters emerge: record W1 while training, draw an animated GIF afterwards.

    from saelab.figures import animation
    recorder = animation.FilterRecorder(every=animation.frame_interval(400))   # ~60 frames
    model.fit(X, callback=recorder)              # or within your own callback: recorder(step)
    recorder.save_gif("training.gif", tile_shape=(8, 8))

    frame_interval(n_steps)            N such that a run of n_steps steps gives about 60 frames
    total_steps(model, m)              L-BFGS iterations or Adam steps a fit on m examples plans
    frame_steps(last, every)           the steps a run of ``last`` steps records
    chain_callbacks(*callbacks)        one training callback calling several
    steady_scaling(frames)             one centre and one scale per tile for the whole animation
    frame_grid(W1, center, scales, tile_shape)   one frame's filter grid, in [-1, 1]
    FilterRecorder                     the training callback; ``save_gif`` draws and writes

Recording is cheap by design: during training the recorder keeps J of every
step (a float) and, every ``every`` steps, a float32 copy of W1; nothing is
drawn until training has ended. The frames are the steps 1, every, 2 every,
... and the last step reached (also after a Ctrl-C or a stop by another
callback), so the animation always ends on the parameters the run returned.

Each frame shows the filter grid (as ``plots.filter_grid``: row j of W1 is
tile j) beside the cost curve so far, with the step and J in the title. The
grey levels are steady over time (``steady_scaling``): one centre for all
tiles and frames, and one scale per tile for all frames, so a tile changes
only where its weights change. Matplotlib imports only when drawing; the GIF
is written by matplotlib's PillowWriter and lands atomically (temporary
file, then rename), so an interrupted drawing leaves no half-written GIF.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np

from saelab.checks.validation import (check_nonnegative, check_output_path,
                                     check_positive_finite, check_tile_shape)
from saelab.figures import plots
from saelab.files.atomic import atomic_write

TARGET_FRAMES = 60            # frame_interval aims here; a default run gives about 40 to 80
FPS = 10                      # frames per second of the GIF
HOLD_SECONDS = 2.0            # the last frame stays this long before the GIF loops
CURVE_WIDTH = 330             # pixels: width of the cost curve's panel
GREY_LEVELS = 32              # grey levels of the filters: plenty for the eye, and a smaller GIF
GRID_SIDE = 240               # pixels: the filter grid is upscaled by an integer factor to about this


# ---------------------------------------------------------------------------
# Which steps become frames
# ---------------------------------------------------------------------------


def frame_interval(n_steps, target=TARGET_FRAMES):
    """N = max(1, n_steps // target): a run of n_steps steps gives target to 2 target frames.

    400 L-BFGS iterations: N = 6, 68 frames. 10 epochs of Adam on 10,000
    examples in batches of 128 (790 steps): N = 13, 62 frames.
    """
    if isinstance(n_steps, bool) or not isinstance(n_steps, (int, np.integer)) or n_steps < 1:
        raise ValueError(f"n_steps: expected a positive integer, got {n_steps!r}")
    return max(1, int(n_steps) // target)


def total_steps(model, m):
    """The steps ``model.fit`` on m examples plans: L-BFGS ``max_iter``, Adam epochs x batches."""
    if model.optimizer == "lbfgs":
        return model.max_iter
    return model.epochs * math.ceil(m / model.batch_size)


def frame_steps(last, every):
    """The steps recorded by a run that ended at step ``last``: 1, every, 2 every, ..., last."""
    return sorted({1, last, *range(every, last + 1, every)})


def chain_callbacks(*callbacks):
    """One training callback calling each callback (None ones skipped) in order.

    It returns True (stop) if any of them did; all are called at every step.
    """
    active = [callback for callback in callbacks if callback is not None]

    def chained(step):
        stops = [bool(callback(step)) for callback in active]
        return any(stops)

    return chained


# ---------------------------------------------------------------------------
# Steady grey levels (pure NumPy)
# ---------------------------------------------------------------------------


def steady_scaling(frames):
    """(center, scales): display_network's scaling with its statistics taken over ALL frames.

    frames: k arrays (n_hidden, n_visible), the filters of the k frames
    (a list, or an array (k, n_hidden, n_visible)).
    center: the mean of every weight of every frame (one number); scales:
    (n_hidden,), scales[j] the largest |w - center| of tile j over all
    frames. Tile j of frame t is then (frames[t, j] - center) / scales[j].

    Why: ``plots.filter_grid`` (UFLDL's display_network) subtracts the mean
    of W1 and divides each tile by its own largest value, every frame anew.
    In an animation that makes a tile flicker: its grey levels would change
    whenever the mean of all the weights or the tile's own extreme weight
    moves, even where its weights do not. Here each tile keeps one linear
    map from weight to grey for the whole animation, so a weight that does
    not change keeps its grey, a tile that does not change keeps its pixels,
    nothing ever saturates (the scale is the maximum over all frames), and
    the rising contrast shows the weights growing out of the small random
    initialization (the first frame of the default runs has about a quarter
    (patches) and a seventh (MNIST) of the last frame's contrast). It is
    still per tile, so units with small weights stay visible. The price: a
    tile whose weights were largest mid-run is a little dimmer in the last
    frame than in NAME_filters.png. On the default runs a tile's scale is a
    median 1.09 (patches) and 1.01 (MNIST) times its largest |w - center|
    in the last frame; at most 1.44 for 24 of the 25 patch tiles (2.5 for
    one), and over 1.5 for 2 of MNIST's 196.
    """
    frames = [np.asarray(W, dtype=np.float64) for W in frames]
    if not frames or frames[0].ndim != 2 or any(W.shape != frames[0].shape for W in frames):
        raise ValueError("frames: expected k >= 1 arrays (n_hidden, n_visible) of one shape")
    center = float(np.mean([W.mean() for W in frames]))     # frames are of one size
    scales = np.max([np.abs(W - center).max(axis=1) for W in frames], axis=0)
    scales[scales == 0] = 1.0                                # an all-zero tile stays mid-grey
    return center, scales


def frame_grid(W1, center, scales, tile_shape):
    """One frame's filter grid in [-1, 1]: tile j is (W1[j] - center) / scales[j]."""
    W1 = np.asarray(W1, dtype=np.float64)
    return plots.scaled_filter_grid(W1, tile_shape, center, np.asarray(scales)[:, None])


# ---------------------------------------------------------------------------
# The recorder
# ---------------------------------------------------------------------------


class FilterRecorder:
    """A training callback that records the filters every ``every`` steps, and J at every step.

        recorder = FilterRecorder(every=6)
        model.fit(X, callback=recorder)
        recorder.save_gif("training.gif", tile_shape=(8, 8))

    every: record W1 at steps 1, every, 2 every, ... (L-BFGS iterations or
    Adam steps); the last step reached is added when drawing. Returns None,
    so it never stops training; to combine it with a callback of your own,
    call it from yours or use ``chain_callbacks(recorder, yours)``. One
    recorder per fit (a second fit would append to the first). Memory: one
    float32 copy of W1 per frame (68 frames of MNIST's 196 x 784: 42 MB).
    """

    def __init__(self, every):
        if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
            raise ValueError(f"every: expected a positive integer, got {every!r}")
        self.every = int(every)
        self.optimizer = None
        self.steps, self.epochs, self.costs = [], [], []      # every step
        self.recorded = []                                    # (index into steps, W1 float32 copy)
        self._latest_W1 = None

    def __call__(self, step):
        self.optimizer = step.optimizer
        self.steps.append(step.iteration)
        self.epochs.append(step.epoch)
        self.costs.append(float(step.cost))
        W1 = step.params["W1"]
        if step.iteration == 1 or step.iteration % self.every == 0:
            self.recorded.append((len(self.steps) - 1, W1.astype(np.float32)))
            self._latest_W1 = None
        else:
            # The optimizers never modify the arrays they hand to the callback
            # (common.TrainingStep), so a reference is enough until it is drawn.
            self._latest_W1 = W1
        return None

    def frames(self):
        """[(index of the step in ``steps``, W1 as float32)], the last step reached included."""
        frames = list(self.recorded)
        if self._latest_W1 is not None:
            frames.append((len(self.steps) - 1, self._latest_W1.astype(np.float32)))
        return frames

    def __len__(self):
        return len(self.recorded) + (self._latest_W1 is not None)

    def title(self, index):
        """'L-BFGS iteration 120: J = 0.4567' or 'Adam step 130 (epoch 2): mini-batch J = 0.4567'."""
        if self.optimizer == "adam":
            return (f"Adam step {self.steps[index]} (epoch {self.epochs[index]}): "
                    f"mini-batch J = {self.costs[index]:.5g}")
        return f"L-BFGS iteration {self.steps[index]}: J = {self.costs[index]:.5g}"

    def save_gif(self, path, tile_shape, *, transform=None, fps=FPS, hold_seconds=None):
        """Draw every frame and write the animated GIF to ``path`` atomically; returns the path.

        tile_shape: (h, w) of one filter. transform: None, or a function of
        one frame's W1 giving the (n_hidden, h*w) rows to draw (W1 @ W_zca
        shows ZCA filters on pixels). The last frame is shown for
        ``hold_seconds`` more (default HOLD_SECONDS; Pillow merges the
        repeats into one frame).
        Raises ValueError or TypeError naming the argument, before drawing
        anything: no step recorded; a path that cannot name a file (empty,
        None, a folder; a missing parent folder is created); a tile_shape
        that is not two integers >= 1 whose product is the filters' width; fps
        not finite and > 0; hold_seconds not finite and >= 0; a transform that
        is not callable or gives anything but finite (n_hidden, h*w) rows.
        """
        path = check_output_path("path", path)
        fps, hold_seconds = check_drawing_options(fps, hold_seconds)
        if transform is not None and not callable(transform):
            raise TypeError(f"transform: expected None or a function of W1, got "
                            f"{type(transform).__name__}")
        frames = self.frames()
        if not frames:
            raise ValueError("FilterRecorder: no step was recorded, so there is nothing to draw")
        rows = [_transformed(transform, W1) for _, W1 in frames]
        check_tile_shape(tile_shape, rows[0].shape[1], "a frame")
        center, scales = steady_scaling(rows)
        images = [frame_grid(W, center, scales, tile_shape) for W in rows]
        indices = [index for index, _ in frames]
        return write_gif(path, images, indices, self.steps, self.costs, self.title,
                         adam=self.optimizer == "adam", fps=fps, hold_seconds=hold_seconds)


def check_drawing_options(fps, hold_seconds):
    """(fps, hold_seconds) as floats: fps finite and > 0; hold_seconds None (HOLD_SECONDS)
    or finite and >= 0. Anything else raises naming the argument."""
    fps = check_positive_finite("fps", fps)
    hold_seconds = HOLD_SECONDS if hold_seconds is None else check_nonnegative("hold_seconds",
                                                                                hold_seconds)
    return fps, hold_seconds


def _transformed(transform, W1):
    """transform(W1) (or W1), checked: a finite 2-D array with one row per filter."""
    if transform is None:
        return W1
    rows = np.asarray(transform(W1), dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] != W1.shape[0]:
        raise ValueError(f"transform: expected an array ({W1.shape[0]}, n_pixels), one row per "
                         f"filter, got shape {rows.shape}")
    if not np.isfinite(rows).all():
        raise ValueError("transform: returned NaN or infinite values, which cannot be drawn")
    return rows


# ---------------------------------------------------------------------------
# Drawing (matplotlib, Agg canvas, no pyplot)
# ---------------------------------------------------------------------------


def layout(grid_shape):
    """(factor, (width, height)): the grid's integer upscale factor and the GIF's size in pixels.

    grid_shape: (rows, cols) of ``frame_grid``'s image. The grid is drawn at
    ``factor`` screen pixels per grid pixel (about GRID_SIDE pixels on its
    larger side, at least 1), the cost curve beside it.
    """
    factor = max(1, round(GRID_SIDE / max(grid_shape)))
    panel = max(grid_shape[0] * factor, 200)
    width = MARGIN + grid_shape[1] * factor + GAP + CURVE_WIDTH + MARGIN
    height = BOTTOM + panel + TOP
    return factor, (width, height)


# Drawn without antialiasing, a frame has well under 256 colours (the 32
# greys of the filters, black, white, the curve's and the point's colour
# and the grid lines'), so the GIF's palette holds them exactly: a grey
# that does not change keeps its pixel value from frame to frame, and the
# GIF compresses better. Antialiased text and lines would add hundreds of
# shades, which the GIF's per-frame palette would merge differently in
# every frame.
CRISP = {"text.antialiased": False, "lines.antialiased": False, "patch.antialiased": False}
MARGIN, GAP, BOTTOM, TOP = 20, 70, 45, 45       # pixels around and between the two panels


def write_gif(path, images, indices, steps, costs, title, *, adam=False, fps=FPS,
              hold_seconds=HOLD_SECONDS):
    """Write the GIF: frame i shows images[i] beside the costs up to steps[indices[i]].

    images: grids in [-1, 1], all of one shape; steps, costs: every step
    recorded; title(index): the title of the frame of that step. The figure
    is built once; each frame only updates the image, the curve and the
    title. PillowWriter writes into a temporary folder, and the bytes land
    at ``path`` through ``atomic_write``.
    """
    from matplotlib import rc_context
    from matplotlib.animation import PillowWriter

    path = check_output_path("path", path)
    fps, hold_seconds = check_drawing_options(fps, hold_seconds)
    holds = max(0, round(hold_seconds * fps))
    with rc_context(CRISP), tempfile.TemporaryDirectory(prefix="animation.") as folder:
        figure, update = _animated_figure(images[0].shape, steps, costs, adam)
        scratch = Path(folder) / "frames.gif"
        writer = PillowWriter(fps=fps)
        with writer.saving(figure, scratch, plots.DPI):
            for i, (grid, index) in enumerate(zip(images, indices)):
                update(grid, index, title(index))
                for _ in range(1 + (holds if i == len(images) - 1 else 0)):
                    writer.grab_frame()
        data = scratch.read_bytes()
    with atomic_write(path) as handle:
        handle.write(data)
    return Path(path)


def _animated_figure(grid_shape, steps, costs, adam):
    """The figure of the animation, and ``update(grid, index, title)`` to show one frame."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    factor, (width, height) = layout(grid_shape)
    grid_h, grid_w = grid_shape[0] * factor, grid_shape[1] * factor
    panel = max(grid_h, 200)
    figure = Figure(figsize=(width / plots.DPI, height / plots.DPI), dpi=plots.DPI)
    FigureCanvasAgg(figure)

    grid_axes = figure.add_axes((MARGIN / width, (BOTTOM + (panel - grid_h) / 2) / height,
                                 grid_w / width, grid_h / height))
    grid_axes.set_axis_off()
    image = grid_axes.imshow(np.zeros((grid_h, grid_w)), vmin=-1, vmax=1, interpolation="nearest",
                             cmap=colormaps["gray"].resampled(GREY_LEVELS))

    curve_axes = figure.add_axes(((MARGIN + grid_w + GAP) / width, BOTTOM / height,
                                  CURVE_WIDTH / width, panel / height))
    steps = np.asarray(steps)
    costs = np.asarray(costs, dtype=np.float64)
    (line,) = curve_axes.plot([], [], color="tab:blue", linewidth=1.0 if adam else 1.5)
    (point,) = curve_axes.plot([], [], "o", color="tab:red", markersize=5, clip_on=False)
    curve_axes.set_xlim(0, max(int(steps[-1]), 1))
    _cost_axis(curve_axes, costs[np.isfinite(costs)])
    curve_axes.set_xlabel("Adam step" if adam else "L-BFGS iteration")
    curve_axes.set_ylabel("mini-batch cost J" if adam else "cost J")
    curve_axes.grid(True, which="major", color="0.85", linewidth=0.5)
    heading = figure.text(0.5, 1 - TOP / 2 / height, "", ha="center", va="center", fontsize=12)

    def update(grid, index, title):
        image.set_data(plots.upscale(grid, factor))
        line.set_data(steps[:index + 1], costs[:index + 1])
        point.set_data([steps[index]], [costs[index]])
        heading.set_text(title)

    return figure, update


def _cost_axis(axes, finite_costs):
    """The y range of all the costs; logarithmic (ticks 1, 2, 5 a decade) when they span over 10x."""
    if not finite_costs.size:
        return
    low, high = float(finite_costs.min()), float(finite_costs.max())
    if low > 0 and high / low > 10:
        from matplotlib.ticker import LogLocator, NullFormatter, StrMethodFormatter

        axes.set_yscale("log")
        axes.set_ylim(low / 1.2, high * 1.2)
        axes.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        axes.yaxis.set_major_formatter(StrMethodFormatter("{x:g}"))      # 20, not 2 x 10^1
        axes.yaxis.set_minor_formatter(NullFormatter())
    else:
        pad = 0.05 * (high - low) or 0.05 * abs(high) or 1.0
        axes.set_ylim(low - pad, high + pad)
