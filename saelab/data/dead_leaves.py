"""Dead leaves: synthetic images with the statistics of natural scenes, made offline.

    dead_leaves_image(size, rng)          one (size, size) image, greys in [0, 1]
    dead_leaves_images(count, size, seed) ``count`` of them from one seed (the
                                          default patches run: 10 of 512 x 512, seed 0)

These are not photographs. They are synthetic images with natural-image
statistics: the dead-leaves model (G. Matheron, 1968) as a model of natural
scenes (A. B. Lee, D. Mumford and J. Huang, "Occlusion models for natural
images: a statistical study of a scale-invariant dead leaves model",
International Journal of Computer Vision 41, 2001). Opaque discs ("leaves")
of random grey fall on top of one another until the image is covered; each
pixel shows the disc in front. Three properties of natural scenes follow,
and they are what gives a sparse autoencoder localized edge detectors:

- occlusion: flat regions cut by sharp edges, each edge the border of the
  object in front;
- edges of every orientation, position, length and curvature;
- scale invariance: with radii drawn from p(r) proportional to 1/r^3
  between r_min and r_max, the images look alike at every scale in between,
  and their power spectrum falls off about as 1/f^2, like photographs of
  natural scenes.

They have no texture, no shading and no noise, so they are whitened with
Olshausen and Field's own cutoff, 0.4 cycles per pixel (the photograph of
``patches.load_images`` needs 0.2 against its JPEG noise).

How an image is drawn, vectorized: a batch of discs is drawn at once, in
front-to-back order (disc 0 is in front of disc 1, ...). Each disc lists
the pixels whose centre lies inside it, and ``np.minimum.at`` keeps, at each
pixel, the smallest disc index that covers it: the disc in front. More
batches follow, behind the first, until every pixel is covered.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from saelab.checks.memory import check_memory
from saelab.checks.validation import as_generator

DEFAULT_COUNT = 10          # as many images as Olshausen's IMAGES.mat
DEFAULT_SIZE = 512          # and as large
DEFAULT_SEED = 0
R_MIN = 2.0                 # smallest disc radius in pixels
R_MAX = 128.0               # largest disc radius in pixels: a quarter of the image
COVERINGS_PER_BATCH = 4     # each batch covers the area about 4 times over, on average


def sample_radii(n, rng, r_min=R_MIN, r_max=R_MAX) -> np.ndarray:
    """``n`` radii from p(r) proportional to r^-3 on [r_min, r_max], by inverting the CDF.

    F(r) = (r_min^-2 - r^-2) / (r_min^-2 - r_max^-2), so r = F^-1(u) for uniform u.
    """
    u = rng.random(n)
    return (r_min ** -2 - u * (r_min ** -2 - r_max ** -2)) ** -0.5


def mean_disc_area(r_min=R_MIN, r_max=R_MAX) -> float:
    """E[pi r^2] under p(r) ~ r^-3 on [r_min, r_max]: 2 pi ln(r_max / r_min) / (r_min^-2 - r_max^-2)."""
    return 2 * math.pi * math.log(r_max / r_min) / (r_min ** -2 - r_max ** -2)


def dead_leaves_image(size=DEFAULT_SIZE, rng=None, *, r_min=R_MIN, r_max=R_MAX) -> np.ndarray:
    """One dead-leaves image: (size, size) float64, greys uniform in [0, 1].

    Disc centres are uniform on the image widened by r_max on every side,
    so that a large disc overhangs the border as often as it would in a
    larger scene; discs that miss the image are skipped. A pixel belongs to
    a disc when its centre is within r of the disc's centre: edges are
    sharp, with no blur. rng: a ``numpy.random.Generator``, a seed or None.
    """
    _check_int("size", size, least=2)
    for name, value in (("r_min", r_min), ("r_max", r_max)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
                math.isfinite(value) and value > 0):
            raise ValueError(f"{name}: expected a radius in pixels > 0, got {value!r}")
    if not r_max > r_min:
        raise ValueError(f"r_max: expected a radius larger than r_min ({r_min!r}), got {r_max!r}")
    rng = as_generator(rng)
    widened = size + 2 * r_max                           # side of the square the centres fall on
    # The image and its disc indices, and about 40 bytes per covered pixel of one batch's discs.
    check_memory("size", 16 * size * size + 40 * COVERINGS_PER_BATCH * math.ceil(widened) ** 2,
                 f"a {size} x {size} dead-leaves image")
    batch = math.ceil(COVERINGS_PER_BATCH * widened ** 2 / mean_disc_area(r_min, r_max))
    none = np.iinfo(np.int64).max
    front = np.full(size * size, none)                   # index of the disc in front, per pixel
    greys = []                                           # one array of greys per batch
    first = 0                                            # index of the batch's first disc
    while front.max() == none:                           # some pixel is still uncovered
        radii = sample_radii(batch, rng, r_min, r_max)                   # (batch,)
        centres = rng.uniform(-r_max, size + r_max, size=(batch, 2))     # (batch, 2): y, x
        greys.append(rng.random(batch))
        index = first + np.arange(batch)                                 # front-to-back order
        first += batch
        hits = ((centres + radii[:, None] >= 0) & (centres - radii[:, None] <= size - 1)).all(axis=1)
        reach = np.ceil(radii).astype(np.int64)          # half-side of each disc's bounding box
        for R in np.unique(reach[hits]):                 # discs of one bounding-box size at once
            group = hits & (reach == R)
            cy, cx, r = (a[group, None, None] for a in (centres[:, 0], centres[:, 1], radii))
            offsets = np.arange(-R, R + 1)
            y = np.floor(cy).astype(np.int64) + offsets[None, :, None]   # (k, 2R+1, 1) pixel rows
            x = np.floor(cx).astype(np.int64) + offsets[None, None, :]   # (k, 1, 2R+1) pixel columns
            inside = ((y - cy) ** 2 + (x - cx) ** 2 <= r ** 2) & (y >= 0) & (y < size) & (x >= 0) & (x < size)
            disc, i, j = np.nonzero(inside)                              # one entry per covered pixel
            np.minimum.at(front, y[disc, i, 0] * size + x[disc, 0, j], index[group][disc])
    return np.concatenate(greys)[front].reshape(size, size)


def dead_leaves_images(count=DEFAULT_COUNT, size=DEFAULT_SIZE, seed=DEFAULT_SEED) -> list:
    """``count`` dead-leaves images of size x size, drawn one after the other from one generator.

    seed: an int (``numpy.random.default_rng(seed)``) or a Generator. The
    same seed gives the same images on every machine.
    """
    _check_int("count", count, least=1)
    rng = as_generator(seed)
    return [dead_leaves_image(size, rng) for _ in range(count)]


def _check_int(name, value, least):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ValueError(f"{name}: expected an integer >= {least}, got {value!r}")
