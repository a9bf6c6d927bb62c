"""Feature density: the histogram of log10 of each latent's firing frequency.

The plot the interpretability papers read (Anthropic's "Towards
Monosemanticity" and its updates, Gao et al. 2024): for every latent, the
fraction of evaluation examples on which it fires, on a log scale. Dead
latents (fraction 0, log10 = -inf) are not in the histogram; they are
counted in the legend. Matplotlib's Agg canvas only, files written
atomically (``plots.new_figure`` / ``plots.save_figure``).

    density_curve(fractions)                     (edges, counts, dead) of one model (pure NumPy)
    save_density_histogram(fractions, path, ...) one model's histogram (train_mnist.py's modern models)
    save_density_panels(panels, path)            several models per panel, one panel per family
                                                 (frontier.py's frontier_density.png)

fractions: (n_hidden,) firing fractions in [0, 1], as
``diagnostics.sparsity_metrics(...)["firing_fractions"]`` or
``ModernAutoencoder.metrics(X)["firing_fractions"]`` give them.
"""

from __future__ import annotations

import numpy as np

from saelab import diagnostics

__all__ = ["density_curve", "save_density_histogram", "save_density_panels"]


def density_curve(fractions, bins=diagnostics.DENSITY_BINS):
    """(edges, counts, dead) of ``diagnostics.feature_density``: the histogram's bin edges in
    log10(firing fraction), the number of latents in each bin, and the number never firing."""
    density = diagnostics.feature_density(fractions, bins)
    return density["edges"], density["counts"], density["dead"]


def _draw(axes, fractions, label, color, threshold_label, linestyle="-"):
    edges, counts, dead = density_curve(fractions)
    axes.stairs(counts, edges, color=color, linewidth=1.6, linestyle=linestyle,
                label=f"{label}: {dead} of {len(fractions)} dead")
    axes.set_xlabel(f"log10 of the fraction of test images on which a latent fires ({threshold_label})")
    axes.set_ylabel("number of latents")
    axes.grid(True, alpha=0.3)


def save_density_histogram(fractions, path, title=None, threshold_label="a2 > 0",
                           size_pixels=(800, 500)):
    """One model's feature-density histogram as a PNG of exactly ``size_pixels``; returns path.

    fractions: (n_hidden,) firing fractions; threshold_label: what counts as
    firing, for the axis label; title: None for a default one.
    """
    from saelab.figures.plots import new_figure, save_figure

    fractions = _fractions(fractions)
    figure = new_figure(size_pixels)
    axes = figure.add_subplot()
    _draw(axes, fractions, "latents", "tab:red", threshold_label)
    axes.set_title(title or f"Feature density of the {fractions.size} latents")
    axes.legend(fontsize=9)
    figure.tight_layout()
    return save_figure(figure, path)


def save_density_panels(panels, path, size_pixels=None):
    """One panel per family, each with one histogram line per model: a PNG; returns path.

    panels: [(title, threshold_label, [(label, fractions, color[, linestyle]), ...]), ...].
    """
    from saelab.figures.plots import new_figure, save_figure

    if not panels:
        raise ValueError("panels: expected at least one panel")
    columns = min(2, len(panels))
    rows = -(-len(panels) // columns)
    figure = new_figure(size_pixels or (760 * columns, 430 * rows))
    for i, (title, threshold_label, curves) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, i + 1)
        for label, fractions, color, *style in curves:
            _draw(axes, _fractions(fractions), label, color, threshold_label, *style)
        axes.set_title(title, fontsize=11)
        axes.set_ylim(0, axes.get_ylim()[1] * (1 + 0.07 * len(curves)))   # room for the legend
        axes.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    return save_figure(figure, path)


def _fractions(fractions):
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 1 or fractions.size == 0:
        raise ValueError(f"fractions: expected a non-empty 1-D array of firing fractions, got shape "
                         f"{fractions.shape}")
    return fractions
