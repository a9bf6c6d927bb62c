"""Image patches for the notes' edge-detector experiment.

The pipeline of UFLDL's first exercise, on any greyscale images:

    load_images      photographs (PNG, JPEG) as grey images in [0, 1]; by
                     default the portrait that ships inside matplotlib
    image_shape      (height, width) of an image file, from its header only
    whiten_images    Olshausen and Field's whitening filter, applied to whole
                     images in the 2-D Fourier domain
    sample_patches   random square patches, one row per patch: (n_patches, size*size)
    normalize_for_sigmoid, sigmoid_limit
                     the exercise's normalization into [0.1, 0.9]
    remove_patch_means
                     each patch minus its own mean brightness
    fit_zca, apply_zca
                     ZCA whitening of patches, for the linear decoder

The images themselves come from three places: synthetic images with
natural-image statistics, drawn offline (``saelab.data.dead_leaves``, the
default of ``train_patches.py``); Olshausen's ten whitened natural scenes,
downloaded (``saelab.data.olshausen``); or photographs (``load_images``).

Patches are flattened in row-major order, so a row reshaped to (size, size)
is the patch as it sat in the image.
"""

from __future__ import annotations

import math
import numbers
import os

import numpy as np

from saelab.checks.memory import check_memory
from saelab.checks.validation import as_generator, plain_array

DEFAULT_IMAGE = "grace_hopper.jpg"


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def default_image_path() -> str:
    """Path of the photograph shipped inside matplotlib (no network needed)."""
    import matplotlib.cbook

    return str(matplotlib.cbook.get_sample_data(DEFAULT_IMAGE, asfileobj=False))


def load_grey_image(path) -> np.ndarray:
    """Read a PNG or JPEG file as a 2-D float64 array in [0, 1].

    Colour images are turned grey by averaging R, G and B (alpha dropped);
    8-bit images are divided by 255.
    """
    import matplotlib.image

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"images: no such file: {path}")
    try:
        image = matplotlib.image.imread(path)
    except Exception as exc:  # Pillow's and matplotlib's many error types
        raise ValueError(f"images: cannot read {path} as a PNG or JPEG image ({exc})") from exc
    image = np.asarray(image)
    if image.dtype == np.uint8:
        image = image / 255.0
    elif image.dtype == np.uint16:
        image = image / 65535.0
    image = image.astype(np.float64, copy=False)
    if image.ndim == 3:
        image = image[..., :3].mean(axis=2)           # RGB(A) -> grey
    if image.ndim != 2:
        raise ValueError(f"images: {path} is not a 2-D greyscale or colour image (shape {image.shape})")
    return image


def image_shape(path) -> tuple:
    """(height, width) of a PNG or JPEG file, read from its header (the pixels are not decoded).

    Raises FileNotFoundError or ValueError naming ``images`` and the file,
    like ``load_grey_image``.
    """
    from PIL import Image, UnidentifiedImageError

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"images: no such file: {path}")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ValueError(f"images: cannot read {path} as a PNG or JPEG image ({exc})") from exc
    return height, width


def load_images(paths=None) -> list:
    """Greyscale images from ``paths`` (a list of paths, or one path), or matplotlib's sample photograph."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    if not paths:
        paths = [default_image_path()]
    return [load_grey_image(path) for path in paths]


# ---------------------------------------------------------------------------
# Whitening of whole images (Olshausen and Field)
# ---------------------------------------------------------------------------


def whitening_filter(shape, cutoff=0.4) -> np.ndarray:
    """Olshausen and Field's filter in the 2-D Fourier domain, shape ``shape``.

    W(f) = |f| * exp(-(|f| / cutoff)^4), with f in cycles per pixel (as
    ``numpy.fft.fftfreq`` gives it) and ``cutoff`` = f0 in cycles per pixel:
    0.4 (0.8 of Nyquist) in their recipe. The factor |f| undoes the 1/f
    amplitude spectrum of natural images; the exponential rolls off the
    highest frequencies, where noise and aliasing live.
    """
    _check_positive("cutoff", cutoff, "a frequency in cycles per pixel")
    if (not isinstance(shape, tuple) or len(shape) != 2
            or not all(isinstance(n, numbers.Integral) and n >= 1 for n in shape)):
        raise ValueError(f"shape: expected (height, width), two positive integers, got {shape!r}")
    fy = np.fft.fftfreq(shape[0])[:, None]          # (H, 1)
    fx = np.fft.fftfreq(shape[1])[None, :]          # (1, W)
    f = np.hypot(fy, fx)                            # |f|, (H, W)
    return f * np.exp(-(f / cutoff) ** 4)


def whiten_image(image, cutoff=0.4) -> np.ndarray:
    """One image through the whitening filter: real part of ifft2(fft2(image) * W)."""
    image = _check_image("image", image)
    spectrum = np.fft.fft2(image) * whitening_filter(image.shape, cutoff)
    return np.fft.ifft2(spectrum).real


def whiten_images(images, cutoff=0.4, variance=0.1) -> list:
    """Whiten every image, then scale them all together to ``variance``.

    One scale factor for all images, as in Olshausen and Field's recipe, so
    that their relative contrast is kept.
    """
    images = _check_images(images)
    _check_positive("variance", variance, "a variance")
    whitened = [whiten_image(image, cutoff) for image in images]
    total = sum(float(np.sum(w ** 2)) for w in whitened)
    count = sum(w.size for w in whitened)
    mean = sum(float(w.sum()) for w in whitened) / count
    std = np.sqrt(total / count - mean ** 2)
    if not std > 0:
        raise ValueError("images: the whitened images are constant; use images with some texture")
    scale = np.sqrt(variance) / std
    return [w * scale for w in whitened]


# ---------------------------------------------------------------------------
# Patches
# ---------------------------------------------------------------------------


def sample_patches(images, n_patches, size, rng=None) -> np.ndarray:
    """``n_patches`` random size x size patches, as rows (n_patches, size*size).

    Each patch picks an image uniformly at random, then a top-left corner
    uniformly among the positions where the patch fits. Vectorized: one
    fancy-indexing gather per image over a sliding-window view, no Python
    loop over patches or pixels.
    """
    if isinstance(n_patches, bool) or not isinstance(n_patches, (int, np.integer)) or n_patches < 1:
        raise ValueError(f"n_patches: expected a positive integer, got {n_patches!r}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"size: expected a positive integer patch side, got {size!r}")
    images = _check_images(images)
    for image in images:
        if image.ndim != 2 or min(image.shape) < size:
            raise ValueError(
                f"images: every image must be 2-D and at least {size} x {size} pixels, got shape {image.shape}"
            )
    rng = as_generator(rng)
    check_memory("n_patches", int(n_patches) * (size * size * 8 * 2 + 8 * 3),   # patches, a gather, indices
                 f"{n_patches} patches of {size} x {size}")
    which = rng.integers(len(images), size=n_patches)           # image of each patch
    patches = np.empty((n_patches, size * size), dtype=np.float64)
    for k, image in enumerate(images):
        rows = np.flatnonzero(which == k)
        windows = np.lib.stride_tricks.sliding_window_view(image, (size, size))
        top = rng.integers(windows.shape[0], size=rows.size)
        left = rng.integers(windows.shape[1], size=rows.size)
        patches[rows] = windows[top, left].reshape(rows.size, size * size)
    return patches


def remove_patch_means(patches) -> np.ndarray:
    """Each patch minus its own mean (its average brightness): (n_patches, n_pixels)."""
    patches = np.asarray(plain_array("patches", patches), dtype=np.float64)
    return patches - patches.mean(axis=1, keepdims=True)


def sigmoid_limit(patches) -> float:
    """The clipping limit of ``normalize_for_sigmoid``: 3 std of the mean-removed patches.

    One std over all values of all patches, each patch's own mean removed
    first. Keep it to normalize new patches exactly like the training ones.
    """
    limit = 3 * float(remove_patch_means(patches).std())
    if not limit > 0:
        raise ValueError("patches: every patch is flat (zero variance); nothing to learn from")
    return limit


def normalize_for_sigmoid(patches, limit=None) -> np.ndarray:
    """The exercise's normalization, so a sigmoid decoder can fit the patches.

    1. remove each patch's own mean;
    2. clip to +-3 standard deviations (one std over all patch values);
    3. divide by that 3 std, giving [-1, 1];
    4. map [-1, 1] to [0.1, 0.9] with (p + 1) * 0.4 + 0.1.
    Input and output are (n_patches, n_pixels). limit: the 3 std to use
    (``sigmoid_limit`` of the training patches, for new patches); None
    computes it from ``patches``.
    """
    patches = _check_patches("patches", patches)
    if limit is None:
        limit = sigmoid_limit(patches)
    elif not (np.isfinite(limit) and limit > 0):
        raise ValueError(f"limit: expected a positive clipping limit, got {limit!r}")
    centred = remove_patch_means(patches)                       # (n_patches, n_pixels)
    np.clip(centred, -limit, limit, out=centred)
    centred /= limit
    return (centred + 1) * 0.4 + 0.1


def fit_zca(patches, epsilon=0.1):
    """ZCA whitening of patches: returns (mean_patch, W_zca).

    mean_patch (n_pixels,) is the mean over patches; with
    Sigma = (X - mean)^T (X - mean) / m = U diag(S) U^T,
    W_zca = U diag(1 / sqrt(S + epsilon)) U^T, a symmetric (n_pixels, n_pixels)
    matrix; ``apply_zca`` computes (X - mean) @ W_zca. epsilon regularizes the
    smallest eigenvalues (UFLDL's linear-decoder exercise uses 0.1). Patches
    that are all the same (no variance) are refused: whitening them would
    give all-zero inputs.
    """
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real):
        raise TypeError(f"epsilon: expected a finite number >= 0, got {epsilon!r}")
    if not (math.isfinite(epsilon) and epsilon >= 0):
        raise ValueError(f"epsilon: expected a finite number >= 0, got {epsilon!r}")
    patches = _check_patches("patches", patches)
    mean_patch = patches.mean(axis=0)                            # (n_pixels,)
    centred = patches - mean_patch
    sigma = centred.T @ centred / patches.shape[0]               # (n_pixels, n_pixels)
    S, U = np.linalg.eigh(sigma)
    S = np.clip(S, 0, None)                                      # round-off can make tiny S negative
    if not S.max() > (1e-12 * np.abs(patches).max()) ** 2:     # no variance, up to round-off
        raise ValueError("patches: every patch is the same (zero variance), nothing to whiten; "
                         "1 x 1 patches, for one, are all 0 once each patch's mean is removed")
    if epsilon == 0 and S.min() <= 0:
        raise ValueError("epsilon: the patch covariance is singular; use epsilon > 0")
    W_zca = (U / np.sqrt(S + epsilon)) @ U.T
    return mean_patch, W_zca


def apply_zca(patches, mean_patch, W_zca) -> np.ndarray:
    """(patches - mean_patch) @ W_zca, shape (n_patches, n_pixels)."""
    patches = _check_patches("patches", patches)
    n_pixels = patches.shape[1]
    mean_patch = np.asarray(plain_array("mean_patch", mean_patch))
    W_zca = np.asarray(plain_array("W_zca", W_zca))
    if mean_patch.shape != (n_pixels,):
        raise ValueError(f"mean_patch: expected shape ({n_pixels},) to match patches "
                         f"{patches.shape}, got {mean_patch.shape}")
    if W_zca.shape != (n_pixels, n_pixels):
        raise ValueError(f"W_zca: expected shape ({n_pixels}, {n_pixels}) to match patches "
                         f"{patches.shape}, got {W_zca.shape}")
    return (patches - mean_patch) @ W_zca


# ---------------------------------------------------------------------------
# Validation: clear errors at the entry points
# ---------------------------------------------------------------------------


def _check_positive(name, value, what):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected {what} > 0, got {value!r}")
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name}: expected {what} > 0, got {value!r}")
    return float(value)


def _check_real_array(name, value, what):
    value = plain_array(name, value)            # masked arrays with values masked are refused
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as exc:          # ragged lists and the like
        raise TypeError(f"{name}: expected {what}, got {type(value).__name__}") from exc
    if array.dtype.kind not in "fiub":
        raise TypeError(f"{name}: expected {what} of real numbers, got dtype {array.dtype}")
    return array


def _check_image(name, image):
    """One greyscale image as a finite 2-D float64 array, or raise."""
    return _check_finite_matrix(name, image, "a 2-D greyscale image (height, width)")


def _check_images(images):
    """A list of greyscale images (or a stack (k, H, W)) as a list of 2-D float64 arrays."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = list(images)
    if isinstance(images, np.ndarray) and images.ndim == 2:
        raise TypeError("images: expected a list of 2-D images, got one 2-D array; pass [image]")
    if isinstance(images, (str, bytes, os.PathLike)) or not isinstance(images, (list, tuple)):
        raise TypeError(f"images: expected a list of 2-D images, got {type(images).__name__}")
    if not images:
        raise ValueError("images: expected at least one image, got an empty list")
    return [_check_image(f"images[{k}]", image) for k, image in enumerate(images)]


def _check_patches(name, patches):
    """Patches as a finite 2-D float64 array (n_patches >= 1, n_pixels >= 1), or raise."""
    return _check_finite_matrix(name, patches, "a 2-D array (n_patches, n_pixels)")


def _check_finite_matrix(name, array, expected):
    """``array`` as a finite 2-D float64 array with a row and a column at least, or raise.

    ``expected`` describes it in the messages, e.g. "a 2-D array (n_patches, n_pixels)".
    """
    array = _check_real_array(name, array, expected)
    if array.ndim != 2 or min(array.shape) < 1:
        raise ValueError(f"{name}: expected {expected}, got shape {array.shape}")
    array = array.astype(np.float64, copy=False)
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: expected finite values, found NaN or infinity")
    return array
