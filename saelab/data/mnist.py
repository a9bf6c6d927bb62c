"""MNIST: a verified IDX reader and a careful downloader.

    load_mnist(data_dir, split="train", n=None, dtype=np.float64)
        -> images (n, 784) in [0, 1], labels (n,) int64

The four files are looked up in ``data_dir`` as raw IDX or gzipped
(``name`` or ``name.gz``). Each is checked twice: its IDX header against its
length (magic, type byte, dimensions), and the SHA-256 of its decompressed
bytes against the published value (the same whatever gzip compressed it).
Missing files are downloaded from the public mirrors into ``data_dir``
through a temporary file that is renamed only once its checksum matches.
Every error names the file.

IDX format: two zero bytes, a type byte (0x08 = unsigned byte, ...), the
number of dimensions d, then d big-endian uint32 sizes, then the data,
big-endian, in row-major order.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import shutil
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

# SHA-256 of the decompressed files (REFERENCE.md).
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}
SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)
IMAGE_SHAPE = (28, 28)
TIMEOUT_SECONDS = 10

# IDX type byte -> big-endian NumPy dtype.
IDX_TYPES = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}


class MNISTNotFoundError(FileNotFoundError):
    """MNIST files are missing and could not be downloaded."""


# ---------------------------------------------------------------------------
# IDX parsing and verification
# ---------------------------------------------------------------------------


def parse_idx(data, source="<bytes>"):
    """Parse the bytes of one (decompressed) IDX file into a NumPy array.

    Checks the magic number (two zero bytes), the type byte, that the header
    holds all d dimension sizes and that the data has exactly prod(sizes)
    items. Raises ValueError naming ``source`` otherwise. The result is a
    read-only view of ``data`` with the header's shape.
    """
    data = memoryview(data).cast("B")
    if len(data) < 4:
        raise ValueError(f"{source}: {len(data)} bytes, too short for an IDX header (4 bytes at least)")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{source}: not an IDX file: expected the magic number to start with two zero bytes, "
            f"got 0x{data[0]:02x} 0x{data[1]:02x} (a gzipped file not named .gz?)"
        )
    type_byte, ndim = data[2], data[3]
    if type_byte not in IDX_TYPES:
        raise ValueError(
            f"{source}: unknown IDX type byte 0x{type_byte:02x}, expected one of "
            f"{', '.join(f'0x{t:02x}' for t in IDX_TYPES)}"
        )
    if ndim == 0:
        raise ValueError(f"{source}: IDX header gives 0 dimensions, expected at least 1")
    header_size = 4 + 4 * ndim
    if len(data) < header_size:
        raise ValueError(f"{source}: truncated IDX header: {ndim} dimensions need "
                         f"{header_size} bytes, the file has {len(data)}")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_TYPES[type_byte]
    expected = math.prod(shape) * dtype.itemsize            # Python integers: never overflows
    found = len(data) - header_size
    if found != expected:
        what = "truncated" if found < expected else "too long"
        raise ValueError(f"{source}: {what}: shape {shape} of {dtype.name} needs {expected} data "
                         f"bytes after the header, the file has {found}")
    return np.frombuffer(data, dtype=dtype, offset=header_size).reshape(shape)


def read_bytes(path):
    """The decompressed bytes of ``path`` (gunzipped when it ends in .gz)."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                return handle.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: not a complete gzip file ({exc}); delete it and download "
                         f"it again") from exc


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def read_idx(path, sha256=None):
    """Read one IDX file (raw or .gz); verify its SHA-256 if ``sha256`` is given.

    The checksum is that of the decompressed bytes. Raises ValueError naming
    the file on a bad gzip stream, a bad header or length, or a checksum
    mismatch.
    """
    path = Path(path)
    data = read_bytes(path)
    array = parse_idx(data, source=str(path))
    if sha256 is not None:
        actual = sha256_hex(data)
        if actual != sha256:
            raise ValueError(f"{path}: SHA-256 of the decompressed data is {actual}, expected "
                             f"{sha256}; the file is corrupt or not the MNIST file of that name: "
                             f"delete it and download it again")
    return array


# ---------------------------------------------------------------------------
# Finding and downloading files
# ---------------------------------------------------------------------------


def find_file(data_dir, name):
    """The path of ``name`` or ``name.gz`` in data_dir (raw first), or None."""
    for candidate in (Path(data_dir) / name, Path(data_dir) / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def fetch(url, destination, timeout=TIMEOUT_SECONDS):
    """Stream ``url`` into the open binary file ``destination`` (urllib)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        shutil.copyfileobj(response, destination)


def download(name, data_dir, *, mirrors=MIRRORS, fetcher=None, timeout=TIMEOUT_SECONDS):
    """Download ``name``.gz into data_dir, trying each mirror in turn.

    The bytes go to a temporary file in data_dir; it is renamed to
    ``name.gz`` only after its decompressed SHA-256 matches ``SHA256[name]``,
    and removed otherwise, so a failed or partial download never leaves a
    file that looks valid. ``fetcher(url, file, timeout)`` defaults to
    ``fetch`` (tests pass a fake). Returns the path; raises OSError with the
    reason of every mirror when all fail.
    """
    fetcher = fetch if fetcher is None else fetcher
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    target = data_dir / f"{name}.gz"
    failures = []
    for mirror in mirrors:
        url = mirror + f"{name}.gz"
        fd, tmp_name = tempfile.mkstemp(dir=data_dir, prefix=f".{name}.gz.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                fetcher(url, handle, timeout)
            _verify_download(Path(tmp_name), name)
            os.replace(tmp_name, target)
            return target
        except (OSError, ValueError) as exc:
            failures.append(f"{url}: {exc}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
    raise OSError("; ".join(failures))


def _verify_download(tmp_path, name):
    """Raise ValueError unless tmp_path gunzips to a valid IDX file with the right SHA-256."""
    try:
        with gzip.open(tmp_path, "rb") as handle:
            data = handle.read()
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"download of {name}.gz is not a complete gzip file ({exc})") from exc
    parse_idx(data, source=f"download of {name}.gz")
    actual = sha256_hex(data)
    if actual != SHA256[name]:
        raise ValueError(f"download of {name}.gz has SHA-256 {actual}, expected {SHA256[name]}")


def ensure_files(data_dir, names, *, download_missing=True, fetcher=None):
    """Paths of ``names`` in data_dir, downloading the missing ones.

    Raises MNISTNotFoundError, saying which files to put where, when a file
    is missing and cannot be downloaded (no network, say). Stops at the
    first failed download rather than waiting on each file in turn.
    """
    data_dir = Path(data_dir)
    paths, missing = {}, []
    for name in names:
        path = find_file(data_dir, name)
        if path is None:
            missing.append(name)
        else:
            paths[name] = path
    for name in missing:
        reason = "downloading is switched off"
        if download_missing:
            try:
                paths[name] = download(name, data_dir, fetcher=fetcher)
                continue
            except OSError as exc:
                reason = f"download failed: {exc}"
        still_missing = [n for n in missing if n not in paths]
        raise MNISTNotFoundError(
            f"MNIST file(s) missing in {data_dir.resolve()}: "
            f"{', '.join(n + '.gz' for n in still_missing)} ({reason}). Put the four files "
            f"{', '.join(n + '.gz' for n in SHA256)} (from {MIRRORS[0]}) into that folder, "
            f"or pass --data-dir with a folder that has them."
        )
    return paths


# ---------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------


def load_mnist(data_dir, split="train", n=None, dtype=np.float64, *, download_missing=True,
               fetcher=None):
    """MNIST images and labels of one split, verified.

    data_dir: folder with the IDX files (raw or .gz); missing ones are
        downloaded into it unless ``download_missing`` is False.
    split: "train" (60,000 examples) or "test" (10,000).
    n: keep the first n examples (all if None).
    dtype: float dtype of the pixels.

    Returns (images, labels): images (n, 784) of ``dtype``, pixel / 255 in
    [0, 1], one image per row in row-major 28 x 28 order; labels (n,) int64
    in 0..9.
    """
    if not isinstance(split, str) or split not in SPLITS:
        raise ValueError(f"split: expected 'train' or 'test', got {split!r}")
    try:
        dtype = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype: expected a float dtype such as float64, got {dtype!r}") from exc
    if dtype.kind != "f":
        raise TypeError(f"dtype: expected a float dtype, got {dtype}")
    if not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir: expected a folder path (str or pathlib.Path), got {data_dir!r}")
    if Path(data_dir).exists() and not Path(data_dir).is_dir():
        raise ValueError(f"data_dir: {data_dir} is a file, expected the folder that holds the MNIST files")
    image_name, label_name = SPLITS[split]
    paths = ensure_files(data_dir, (image_name, label_name),
                         download_missing=download_missing, fetcher=fetcher)
    images = read_idx(paths[image_name], sha256=SHA256[image_name])
    labels = read_idx(paths[label_name], sha256=SHA256[label_name])
    _check_mnist_arrays(paths[image_name], images, paths[label_name], labels)
    available = images.shape[0]
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= available:
            raise ValueError(f"n: expected an integer from 1 to {available} ({split} split), got {n!r}")
        images, labels = images[:n], labels[:n]
    pixels = images.reshape(images.shape[0], -1).astype(dtype)    # (n, 784)
    pixels /= 255
    return pixels, labels.astype(np.int64)


def _check_mnist_arrays(image_path, images, label_path, labels):
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE:
        raise ValueError(f"{image_path}: expected uint8 images of shape (n, 28, 28), "
                         f"got {images.dtype} {images.shape}")
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise ValueError(f"{label_path}: expected uint8 labels of shape (n,), got {labels.dtype} {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{label_path}: {labels.shape[0]} labels for {images.shape[0]} images in {image_path}")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{label_path}: labels must be 0..9, found {labels.max()}")
