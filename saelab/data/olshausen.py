"""Olshausen's ten whitened natural scenes (IMAGES.mat): the images of the notes' figure.

    load_olshausen(data_dir)       -> (images, sha256): 10 arrays (512, 512), already whitened
    parse_images_mat(data, source) the check of the file's format

IMAGES.mat, from Bruno Olshausen's sparsenet page
(http://www.rctn.org/bruno/sparsenet/), holds ten 512 x 512 photographs of
natural scenes, already whitened with his filter |f| exp(-(|f|/f0)^4),
f0 = 0.4 cycles per pixel: the data of Olshausen and Field (1996), of the
notes' edge-detector figure and of UFLDL's Sparse Autoencoder exercise. It
is one MATLAB variable, IMAGES, of shape (512, 512, 10). Being whitened,
the images must not be whitened again.

The file is looked up in ``data_dir`` (``train_patches.py --data-dir``,
default data/olshausen) and downloaded there when missing. As with MNIST
(``saelab.data.mnist``) the download is checked before it is kept: the bytes
are read into memory, parsed and checked, and only then written, through
a temporary file renamed into place (``saelab.files.atomic``), so a failed
download never leaves a file that looks valid. No published checksum
exists to pin, so the file's SHA-256 is returned, and ``train_patches.py``
prints it on every run: compare it with a colleague's.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np

from saelab.data.mnist import fetch
from saelab.files.atomic import atomic_write

URL = "http://www.rctn.org/bruno/sparsenet/IMAGES.mat"
FILE_NAME = "IMAGES.mat"
VARIABLE = "IMAGES"
DEFAULT_DIR = Path("data") / "olshausen"
IMAGE_SIDE = 512            # each image is IMAGE_SIDE x IMAGE_SIDE
IMAGE_COUNT = 10
TIMEOUT_SECONDS = 30


class OlshausenNotFoundError(FileNotFoundError):
    """IMAGES.mat is missing and could not be downloaded."""


def parse_images_mat(data, source=FILE_NAME) -> list:
    """The images of an IMAGES.mat file's bytes, checked: a list of IMAGE_COUNT (side, side) float64 arrays.

    Checks that the file is a MATLAB file that ``scipy.io.loadmat`` reads,
    that it has the variable IMAGES, of real numbers, of shape
    (IMAGE_SIDE, IMAGE_SIDE, IMAGE_COUNT), finite, and that no image is
    constant. Raises ValueError naming ``source`` otherwise.
    """
    import scipy.io

    try:
        contents = scipy.io.loadmat(io.BytesIO(bytes(data)))
    except Exception as exc:                 # scipy raises ValueError, NotImplementedError (v7.3), ...
        raise ValueError(f"{source}: not a MATLAB .mat file that scipy.io.loadmat can read "
                         f"({type(exc).__name__}: {exc})") from exc
    expected = (IMAGE_SIDE, IMAGE_SIDE, IMAGE_COUNT)
    if VARIABLE not in contents:
        found = sorted(k for k in contents if not k.startswith("__"))
        raise ValueError(f"{source}: no variable {VARIABLE} (found {found or 'none'}); expected "
                         f"Olshausen's whitened images, shape {expected}")
    images = np.asarray(contents[VARIABLE])
    if images.dtype.kind not in "fiu":
        raise ValueError(f"{source}: {VARIABLE} holds {images.dtype}, expected real numbers")
    if images.shape != expected:
        raise ValueError(f"{source}: {VARIABLE} has shape {images.shape}, expected {expected} "
                         f"({IMAGE_COUNT} images of {IMAGE_SIDE} x {IMAGE_SIDE})")
    images = images.astype(np.float64)
    if not np.isfinite(images).all():
        raise ValueError(f"{source}: {VARIABLE} holds NaN or infinite values")
    flat = [k for k in range(IMAGE_COUNT) if not images[:, :, k].std() > 0]
    if flat:
        raise ValueError(f"{source}: image {flat[0] + 1} of {VARIABLE} is constant")
    return [np.ascontiguousarray(images[:, :, k]) for k in range(IMAGE_COUNT)]


def download(data_dir, *, url=URL, fetcher=None, timeout=TIMEOUT_SECONDS) -> Path:
    """Download IMAGES.mat into data_dir; returns its path.

    ``fetcher(url, file, timeout)`` (default ``saelab.data.mnist.fetch``,
    urllib; tests pass a fake) writes the bytes into an in-memory file; they
    are checked with ``parse_images_mat`` and only then written atomically.
    Raises OSError (no network, HTTP error, ...) or ValueError (not the
    expected file); nothing is left at the target in either case.
    """
    fetcher = fetch if fetcher is None else fetcher
    buffer = io.BytesIO()
    fetcher(url, buffer, timeout)
    data = buffer.getvalue()
    parse_images_mat(data, source=f"download of {url}")
    target = Path(data_dir) / FILE_NAME
    with atomic_write(target) as handle:
        handle.write(data)
    return target


def load_olshausen(data_dir=DEFAULT_DIR, *, download_missing=True, fetcher=None):
    """Olshausen's images, checked, and the file's SHA-256: (images, sha256).

    images: a list of 10 float64 arrays (512, 512), already whitened: do
    not whiten them again. data_dir: the folder of IMAGES.mat; when the file
    is missing it is downloaded into it, unless ``download_missing`` is
    False. Raises OlshausenNotFoundError, one line with the URL and what to
    do, when it is missing and cannot be downloaded; ValueError naming the
    file when it is not the expected file (delete it to download it again).
    """
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir: expected a folder path (str or pathlib.Path), got {data_dir!r}")
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        raise ValueError(f"data_dir: {data_dir} is a file, expected the folder that holds {FILE_NAME}")
    path = data_dir / FILE_NAME
    if not path.is_file():
        reason = "downloading is switched off"
        if download_missing:
            try:
                download(data_dir, fetcher=fetcher)
                reason = None
            except (OSError, ValueError) as exc:
                reason = " ".join(f"download failed: {exc}".split())
        if reason is not None:
            raise OlshausenNotFoundError(
                f"{FILE_NAME} is not in {data_dir} ({reason}): download {URL} into that folder, "
                f"or pass --data-dir with a folder that has it")
    data = path.read_bytes()
    try:
        images = parse_images_mat(data, source=str(path))
    except ValueError as exc:
        raise ValueError(f"{exc}; delete the file to download it again") from exc
    return images, hashlib.sha256(data).hexdigest()
