"""The MNIST loader: IDX parsing, checksums and downloading, on tiny files the tests write."""

import gzip
import hashlib
import urllib.error

import numpy as np
import pytest

from saelab.data import mnist
from conftest import MNIST_DIR


def idx_bytes(array, type_byte=0x08):
    """The IDX encoding of an array: 0, 0, type byte, ndim, big-endian sizes, big-endian data."""
    dtype = mnist.IDX_TYPES[type_byte]
    header = bytes([0, 0, type_byte, array.ndim]) + np.array(array.shape, dtype=">u4").tobytes()
    return header + np.asarray(array, dtype=dtype).tobytes()


def fake_mnist_split(rng, n=5):
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n, dtype=np.uint8)
    return images, labels


def write_split(tmp_path, monkeypatch, split="train", n=5, gz=True, seed=0):
    """Write a tiny split as MNIST-named files and make the loader expect their checksums."""
    images, labels = fake_mnist_split(np.random.default_rng(seed), n)
    image_name, label_name = mnist.SPLITS[split]
    for name, array in ((image_name, images), (label_name, labels)):
        data = idx_bytes(array)
        monkeypatch.setitem(mnist.SHA256, name, hashlib.sha256(data).hexdigest())
        if gz:
            (tmp_path / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (tmp_path / name).write_bytes(data)
    return images, labels


# --- IDX parsing -----------------------------------------------------------


@pytest.mark.parametrize("type_byte", sorted(mnist.IDX_TYPES))
def test_parse_idx_round_trips_every_type(type_byte):
    array = np.arange(24).reshape(2, 3, 4) - 5
    if type_byte == 0x08:
        array = np.abs(array)
    parsed = mnist.parse_idx(idx_bytes(array, type_byte))
    assert parsed.shape == (2, 3, 4)
    np.testing.assert_array_equal(parsed, array)


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_raw_and_gz(tmp_path, gz):
    array = np.random.default_rng(1).integers(0, 256, size=(3, 28, 28), dtype=np.uint8)
    data = idx_bytes(array)
    path = tmp_path / ("x.idx.gz" if gz else "x.idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    out = mnist.read_idx(path, sha256=hashlib.sha256(data).hexdigest())
    np.testing.assert_array_equal(out, array)
    assert out.dtype == np.uint8


@pytest.mark.parametrize("corrupt, message", [
    (lambda d: b"\x01" + d[1:], "magic"),
    (lambda d: d[:2] + b"\x07" + d[3:], "type byte 0x07"),
    (lambda d: d[:3] + b"\x00" + d[4:], "0 dimensions"),
    (lambda d: d[:6], "truncated IDX header"),
    (lambda d: d[:-1], "truncated"),
    (lambda d: d + b"\x00", "too long"),
    (lambda d: d[:3], "too short"),
])
def test_parse_errors_name_the_file(tmp_path, corrupt, message):
    path = tmp_path / "bad-file-idx3-ubyte"
    path.write_bytes(corrupt(idx_bytes(np.zeros((2, 4, 4), dtype=np.uint8))))
    with pytest.raises(ValueError, match=message) as info:
        mnist.read_idx(path)
    assert str(path) in str(info.value)


def test_truncated_gzip_names_the_file(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((50, 28, 28), dtype=np.uint8)))[:-20])
    with pytest.raises(ValueError, match="not a complete gzip file") as info:
        mnist.read_idx(path)
    assert str(path) in str(info.value)


def test_checksum_mismatch_names_the_file(tmp_path):
    path = tmp_path / "x.idx"
    path.write_bytes(idx_bytes(np.ones((2, 2), dtype=np.uint8)))
    with pytest.raises(ValueError, match="SHA-256") as info:
        mnist.read_idx(path, sha256="0" * 64)
    assert str(path) in str(info.value)


# --- the loader on fake MNIST files ------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_returns_scaled_pixels_and_labels(tmp_path, monkeypatch, gz):
    images, labels = write_split(tmp_path, monkeypatch, gz=gz)
    X, y = mnist.load_mnist(tmp_path, "train", download_missing=False)
    assert X.shape == (5, 784) and X.dtype == np.float64
    np.testing.assert_array_equal(X, images.reshape(5, 784) / 255.0)
    assert y.dtype == np.int64
    np.testing.assert_array_equal(y, labels)


def test_load_mnist_first_n_and_float32(tmp_path, monkeypatch):
    images, labels = write_split(tmp_path, monkeypatch, split="test")
    X, y = mnist.load_mnist(tmp_path, "test", n=3, dtype=np.float32, download_missing=False)
    assert X.shape == (3, 784) and X.dtype == np.float32
    np.testing.assert_array_equal(X, (images[:3].reshape(3, 784) / np.float32(255)).astype(np.float32))
    np.testing.assert_array_equal(y, labels[:3])
    with pytest.raises(ValueError, match="n: expected an integer from 1 to 5"):
        mnist.load_mnist(tmp_path, "test", n=6, download_missing=False)


def test_load_mnist_rejects_wrong_checksum_even_if_well_formed(tmp_path, monkeypatch):
    write_split(tmp_path, monkeypatch)
    monkeypatch.setitem(mnist.SHA256, "train-labels-idx1-ubyte", "f" * 64)
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.gz: SHA-256"):
        mnist.load_mnist(tmp_path, "train", download_missing=False)


def test_load_mnist_label_count_mismatch(tmp_path, monkeypatch):
    images, _ = fake_mnist_split(np.random.default_rng(0), 5)
    labels = np.zeros(4, dtype=np.uint8)
    for name, array in (("train-images-idx3-ubyte", images), ("train-labels-idx1-ubyte", labels)):
        data = idx_bytes(array)
        monkeypatch.setitem(mnist.SHA256, name, hashlib.sha256(data).hexdigest())
        (tmp_path / name).write_bytes(data)
    with pytest.raises(ValueError, match="4 labels for 5 images"):
        mnist.load_mnist(tmp_path, "train", download_missing=False)


def test_bad_split_and_dtype(tmp_path):
    with pytest.raises(ValueError, match="split"):
        mnist.load_mnist(tmp_path, "validation")
    with pytest.raises(TypeError, match="dtype"):
        mnist.load_mnist(tmp_path, "train", dtype=np.uint8)


# --- downloading, with the network faked -------------------------------------


def serve(contents):
    """A fake fetcher serving {url suffix: bytes or exception}; records the URLs asked for."""
    calls = []

    def fetcher(url, destination, timeout):
        calls.append(url)
        for suffix, body in contents.items():
            if url.endswith(suffix):
                if isinstance(body, Exception):
                    destination.write(b"\x1f\x8b partial bytes")
                    raise body
                destination.write(body)
                return
        raise urllib.error.URLError("no route to host")

    fetcher.calls = calls
    return fetcher


def fake_gz_files(monkeypatch, split="train"):
    images, labels = fake_mnist_split(np.random.default_rng(2))
    files = {}
    for name, array in zip(mnist.SPLITS[split], (images, labels)):
        data = idx_bytes(array)
        monkeypatch.setitem(mnist.SHA256, name, hashlib.sha256(data).hexdigest())
        files[name] = gzip.compress(data)
    return files, images, labels


def test_download_when_missing(tmp_path, monkeypatch):
    files, images, labels = fake_gz_files(monkeypatch)
    fetcher = serve({f"{name}.gz": body for name, body in files.items()})
    data_dir = tmp_path / "new" / "mnist"
    X, y = mnist.load_mnist(data_dir, "train", fetcher=fetcher)
    np.testing.assert_array_equal(X, images.reshape(5, 784) / 255.0)
    np.testing.assert_array_equal(y, labels)
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(f"{n}.gz" for n in files)
    assert all(url.startswith(mnist.MIRRORS[0]) for url in fetcher.calls)


def test_download_falls_back_to_the_next_mirror_after_a_bad_file(tmp_path, monkeypatch):
    files, _, _ = fake_gz_files(monkeypatch)
    name = "train-images-idx3-ubyte"
    wrong = gzip.compress(idx_bytes(np.zeros((5, 28, 28), dtype=np.uint8)))   # valid IDX, wrong SHA

    def fetcher(url, destination, timeout):
        fetcher.calls.append(url)
        destination.write(wrong if url.startswith(mnist.MIRRORS[0]) else files[name])
    fetcher.calls = []

    path = mnist.download(name, tmp_path, fetcher=fetcher)
    assert fetcher.calls == [m + f"{name}.gz" for m in mnist.MIRRORS]
    assert path.read_bytes() == files[name]
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.gz"]


@pytest.mark.parametrize("failure", ["partial", "wrong checksum", "not gzip"])
def test_failed_download_leaves_nothing_that_looks_valid(tmp_path, monkeypatch, failure):
    files, _, _ = fake_gz_files(monkeypatch)
    name = "train-images-idx3-ubyte"
    body = {
        "partial": ConnectionResetError("connection reset mid-way"),
        "wrong checksum": gzip.compress(idx_bytes(np.ones((5, 28, 28), dtype=np.uint8))),
        "not gzip": b"<html>Not Found</html>",
    }[failure]
    fetcher = serve({f"{name}.gz": body})
    with pytest.raises(mnist.MNISTNotFoundError) as info:
        mnist.load_mnist(tmp_path, "train", fetcher=fetcher)
    assert list(tmp_path.iterdir()) == []                    # no .gz, no temporary file
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and "--data-dir" in message
    assert str(tmp_path) in message


def test_no_network_fails_fast_naming_the_files(tmp_path, monkeypatch):
    fetcher = serve({})                                      # every URL: URLError
    monkeypatch.setattr(mnist, "fetch", fetcher)             # the default fetcher, as the scripts use it
    with pytest.raises(mnist.MNISTNotFoundError) as info:
        mnist.load_mnist(tmp_path, "test")
    assert len(fetcher.calls) == len(mnist.MIRRORS)          # one file tried, then stop
    message = str(info.value)
    for name in mnist.SPLITS["test"]:
        assert f"{name}.gz" in message
    assert "--data-dir" in message and "no route to host" in message
    assert list(tmp_path.iterdir()) == []


def test_no_download_when_switched_off(tmp_path):
    with pytest.raises(mnist.MNISTNotFoundError, match="downloading is switched off"):
        mnist.load_mnist(tmp_path, "train", download_missing=False)


# --- real MNIST ----------------------------------------------------------------


@pytest.mark.skipif(not MNIST_DIR.is_dir(), reason=f"real MNIST not found in {MNIST_DIR}")
def test_real_mnist_verifies_and_has_the_published_class_counts():
    X, y = mnist.load_mnist(MNIST_DIR, "test", download_missing=False)
    assert X.shape == (10_000, 784) and X.min() == 0.0 and X.max() == 1.0
    assert np.bincount(y).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    _, y_train = mnist.load_mnist(MNIST_DIR, "train", download_missing=False)
    assert np.bincount(y_train).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
