"""The model file: one .npz that ``save_model`` writes and ``load_model`` reads back.

    save_model(path, params, hyperparameters, *, history=None, extra=None)
    load_model(path) -> (params, hyperparameters, history, extra)

The estimators' ``save`` and ``load`` (``saelab.training``) use these.

What a file holds (a zip archive of .npy members, as ``numpy.savez``
writes): ``format_version`` (1); the params ``W1``, ``b1``, ``W2``,
``b2`` (exact bits, float32 or float64); ``hyperparameters`` and
``history`` as JSON text; and each array of ``extra`` as ``extra_<name>``.
The hyperparameter ``model`` names the model the params belong to
("relu_l1" or "topk", written by ``modern.ModernAutoencoder``); files
without it hold the notes' sigmoid model (``model_name``). The params
have the same layout for every model, but not the same encoder:
``saelab.training.loading.load_autoencoder`` gives back the estimator
that encodes with the right one.

The guarantees:

* ``save_model`` refuses, before anything is written, whatever
  ``load_model`` would refuse, each with a ValueError or TypeError naming
  the argument: params that ``check_params`` refuses; hyperparameters that
  are not a dict of JSON values (str keys; str, int, float, bool, None,
  lists, dicts; at most ``MAX_JSON_DEPTH`` levels deep); ``n_visible`` /
  ``n_hidden`` / ``dtype`` hyperparameters that contradict the params;
  an ``info`` hyperparameter that is not a dict; ``extra`` arrays that are
  ragged, masked with values masked, or of a dtype that is not numbers,
  booleans or strings (object, structured, void, dates). Everything it
  accepts, ``load_model`` returns equal (the same dicts, lists, floats bit
  for bit, arrays of the same dtype, shape and values), and what
  ``load_model`` returns can be saved again. The file is written to a
  temporary name and renamed, so a failure never leaves half a file.
* ``load_model`` turns every malformed file into one ValueError naming the
  file (FileNotFoundError if there is none). It reads each member's .npy
  header itself and compares the size the header claims with the bytes the
  member holds before reading any data, so a lying header never makes it
  allocate; it never unpickles (object arrays are refused), and it checks
  the JSON's nesting depth before parsing it.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import zipfile
from pathlib import Path

import numpy as np

from saelab.files.atomic import atomic_write
from saelab.checks.validation import PARAM_NAMES, check_params

__all__ = ["save_model", "load_model", "model_name", "FORMAT_VERSION", "MAX_JSON_DEPTH",
           "EXTRA_PREFIX", "NOTES_MODEL"]

FORMAT_VERSION = 1
EXTRA_PREFIX = "extra_"
MAX_JSON_DEPTH = 64                 # nesting levels of lists and dicts in hyperparameters / history
EXTRA_KINDS = "biufcSU"             # booleans, integers, floats, complex, bytes and str arrays
_CHUNK = 1 << 24                    # bytes read at a time from a member
_MAX_HEADER = 10_000                # the largest .npy header read (numpy's own default limit)
NOTES_MODEL = "sigmoid"             # the model of a file whose hyperparameters name none


def model_name(hyperparameters):
    """Which model a file holds: its hyperparameters' "model" ("relu_l1", "topk", ...),
    or "sigmoid" (the notes' model) for files that name none, as the notes' estimator writes.

    A "model" that is not a non-empty string (5, None, "") names no model: a
    ValueError saying so, never the notes' model by default. ``save_model``
    refuses such hyperparameters and ``load_model`` such files.
    """
    if not isinstance(hyperparameters, dict):
        raise TypeError(f"hyperparameters: expected a dict, got {type(hyperparameters).__name__}")
    if "model" not in hyperparameters:
        return NOTES_MODEL
    name = hyperparameters["model"]
    if not isinstance(name, str) or not name:
        raise ValueError(f"hyperparameters['model']: expected a model name, a non-empty string "
                         f"such as {NOTES_MODEL!r} or 'topk', got {name!r}")
    return name


# ---------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------


def save_model(path, params, hyperparameters, *, history=None, extra=None):
    """Write one .npz file atomically (temporary file, then ``os.replace``); returns the path.

    params: W1, b1, W2, b2 (``validation.check_params``). hyperparameters:
    a dict of JSON values; ``n_visible``, ``n_hidden`` and ``dtype``, when
    present, must agree with the params, and ``info``, when present, must
    be a dict. history: any JSON value (None by default). extra: a dict of
    identifier names to arrays of numbers, booleans or strings (e.g. a ZCA
    whitening matrix and its mean). Everything is checked before anything
    is written; the file loads back equal with ``load_model``.
    """
    path = check_file_path(path)
    params = check_params(params)
    if not isinstance(hyperparameters, dict):
        raise TypeError(f"hyperparameters: expected a dict, got {type(hyperparameters).__name__}")
    _check_json("hyperparameters", hyperparameters)
    _check_json("history", history)
    problem = _contradiction(params, hyperparameters)
    if problem:
        raise ValueError(f"hyperparameters: {problem}")
    arrays = {
        "format_version": np.array(FORMAT_VERSION),
        "hyperparameters": np.array(_to_json("hyperparameters", hyperparameters)),
        "history": np.array(_to_json("history", history)),
    }
    arrays.update({name: params[name] for name in PARAM_NAMES})
    arrays.update({EXTRA_PREFIX + name: value for name, value in _check_extra(extra).items()})
    return write_npz_verified(path, arrays, _read_model)


def check_file_path(path):
    """path as a Path: a str or os.PathLike, not empty; else raise naming it."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a file path (str or pathlib.Path), got {path!r}")
    if str(path) == "":
        raise ValueError("path: expected a file path, got ''")
    return Path(path)


def write_npz_verified(path, arrays, read_back):
    """``np.savez(arrays)`` in memory; ``read_back(buffer, name)`` must load it (else a
    ValueError and nothing written: never a file that cannot be loaded back); then the
    bytes land at ``path`` atomically. Shared by ``save_model`` and ``stacked_file.save_stacked``."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    try:
        read_back(buffer, str(path))
    except ValueError as exc:            # a bug of ours, if it ever happens: say so, write nothing
        raise ValueError(f"path {path}: the file would not load back, nothing written ({exc})") from exc
    with atomic_write(path) as handle:
        handle.write(buffer.getbuffer())
    return Path(path)


def read_npz_file(path, read, what, saver):
    """``read(handle, name)`` on the file at ``path``, opened in binary; a folder, a missing
    or unreadable file raise naming it ("{what} {path}: ..."; ``saver`` writes such files)."""
    path = check_file_path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path}: is a folder, expected a .npz file saved by {saver}")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path}: no such file")
    try:
        with open(path, "rb") as handle:
            return read(handle, str(path))
    except OSError as exc:
        raise ValueError(f"{what} {path}: cannot be read ({exc})") from exc


def parse_npz(handle, name, parse, what, kind):
    """``parse(handle)``, every problem a ValueError naming ``name``: a FileContentError's
    message, or what the zip and npy readers raise ("not a readable {kind}")."""
    try:
        return parse(handle)
    except FileContentError as exc:
        raise ValueError(f"{what} {name}: {exc}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError,
            NotImplementedError, RuntimeError) as exc:
        raise ValueError(f"{what} {name}: not a readable {kind} ({exc})") from None
    except MemoryError:
        raise ValueError(f"{what} {name}: too large to load into memory") from None


def _check_json(name, value, where="", depth=0):
    """Raise naming ``name`` unless value is made of JSON types that load back equal.

    Dicts need str keys (json would turn other keys into strings); tuples
    are refused (they would come back as lists); nesting is bounded
    (``MAX_JSON_DEPTH``). ``where``: the path inside value, for the message.
    """
    if value is None or isinstance(value, (bool, str, int, float)):
        return
    at = f" (at {name}{where})" if where and len(where) <= 80 else ""
    if isinstance(value, (list, dict)) and depth >= MAX_JSON_DEPTH:
        raise ValueError(f"{name}: lists and dicts nested more than {MAX_JSON_DEPTH} levels deep{at}")
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(name, item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{name}: expected str keys (JSON's), got the key {_short_repr(key)}{at}")
            _check_json(name, item, f"{where}[{key!r}]", depth + 1)
        return
    raise TypeError(f"{name}: expected JSON values (str, int, float, bool, None, lists, dicts "
                    f"with str keys), got {type(value).__name__} {_short_repr(value)}{at}")


def _to_json(name, value):
    try:
        text = json.dumps(value, allow_nan=True)
        json.loads(text)                 # e.g. an int of more digits than Python parses back
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: cannot be written as JSON that reads back ({exc})") from None
    return text


def _short_repr(value, limit=60):
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _contradiction(params, hyperparameters):
    """What in hyperparameters contradicts the params (None if nothing)."""
    W1 = params["W1"]
    n_hidden, n_visible = W1.shape
    for key, actual in (("n_visible", n_visible), ("n_hidden", n_hidden)):
        if key in hyperparameters:
            value = hyperparameters[key]
            if isinstance(value, bool) or not isinstance(value, int) or value != actual:
                return f"{key}={value!r}, but W1 has shape {W1.shape}"
    if "dtype" in hyperparameters and hyperparameters["dtype"] != W1.dtype.name:
        return f"dtype={hyperparameters['dtype']!r}, but the params are {W1.dtype.name}"
    if "info" in hyperparameters and not isinstance(hyperparameters["info"], dict):
        return f"info: expected a dict, got {type(hyperparameters['info']).__name__}"
    if "model" in hyperparameters and not (isinstance(hyperparameters["model"], str)
                                           and hyperparameters["model"]):
        return (f"model={hyperparameters['model']!r}, which names no model (expected a "
                f"non-empty string such as {NOTES_MODEL!r} or 'topk')")
    return None


def _check_extra(extra):
    """extra as a dict of plain arrays that load back equal, or raise naming extra."""
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise TypeError(f"extra: expected a dict of arrays, got {type(extra).__name__}")
    arrays = {}
    for name, value in extra.items():
        if not (isinstance(name, str) and name.isidentifier() and name.isascii()):
            raise TypeError(f"extra: expected names that are ASCII identifiers, got {name!r}")
        label = f"extra['{name}']"
        if isinstance(value, np.ma.MaskedArray):
            if np.ma.count_masked(value):
                raise ValueError(f"{label}: a masked array with {np.ma.count_masked(value)} "
                                 f"masked values; fill them first (value.filled(...))")
            value = np.ma.getdata(value)
        try:
            value = np.asarray(value)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{label}: expected an array of numbers or strings, got a ragged "
                            f"or mixed {type(value).__name__}") from exc
        if value.dtype.kind not in EXTRA_KINDS or value.dtype.fields is not None:
            raise TypeError(f"{label}: expected an array of numbers, booleans or strings, "
                            f"got dtype {value.dtype}")
        if value.dtype.itemsize == 0:
            raise TypeError(f"{label}: expected a dtype of nonzero size, got {value.dtype}")
        arrays[name] = value
    return arrays


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_model(path):
    """Read a file written by ``save_model``: returns (params, hyperparameters, history, extra).

    Raises FileNotFoundError if there is no file, and one ValueError naming
    the file for anything else: not an .npz, truncated or corrupted,
    another format version, missing members, members that are not plain
    .npy arrays (object arrays, headers that claim more bytes than the
    member holds), JSON that is invalid or nested too deep, params that
    ``check_params`` refuses or that contradict the hyperparameters.
    """
    return read_npz_file(path, _read_model, "model file", "save_model")


def _read_model(handle, name):
    """load_model on an open binary file; every problem a ValueError naming ``name``."""
    return parse_npz(handle, name, _parse, "model file", ".npz model file")


class FileContentError(Exception):
    """A problem with a model file's contents; the message says which (shared with
    ``stacked_file``, whose loader reads its members with ``read_npz_member`` too)."""


def _parse(handle):
    start = handle.read(6)
    if not start.startswith((b"PK\x03\x04", b"PK\x05\x06")):     # the zip signatures
        raise FileContentError("not a readable .npz model file (" + (
            "it holds a single .npy array, not an .npz archive" if start.startswith(b"\x93NUMPY")
            else "the file is empty" if not start else "it is not a zip archive, as .npz files are")
            + ")")
    handle.seek(0, os.SEEK_END)
    archive_size = handle.tell()
    handle.seek(0)
    with zipfile.ZipFile(handle) as archive:
        members = {info.filename[:-4]: info for info in archive.infolist()
                   if info.filename.endswith(".npy")}
        if "format_version" not in members:
            raise FileContentError("no format_version, so not a model saved by save_model")

        def read(key, kinds):
            return read_npz_member(archive, members[key], key, kinds, archive_size)

        version = read("format_version", "iu")
        if version.shape != () or int(version) != FORMAT_VERSION:
            raise FileContentError(f"format version {version.tolist()!r}, expected {FORMAT_VERSION}")
        missing = [key for key in (*PARAM_NAMES, "hyperparameters", "history") if key not in members]
        if missing:
            raise FileContentError(f"missing {', '.join(missing)}")
        hyperparameters = _from_json("hyperparameters", read("hyperparameters", "U"))
        history = _from_json("history", read("history", "U"))
        if not isinstance(hyperparameters, dict):
            raise FileContentError("hyperparameters is not a dict")
        params = {key: read(key, "f") for key in PARAM_NAMES}
        try:
            check_params(params)
        except (TypeError, ValueError) as exc:
            raise FileContentError(str(exc)) from None
        problem = _contradiction(params, hyperparameters)
        if problem:
            raise FileContentError(f"hyperparameters say {problem}")
        extra = {}
        for key in members:
            if key.startswith(EXTRA_PREFIX):
                extra_name = key[len(EXTRA_PREFIX):]
                if not (extra_name.isidentifier() and extra_name.isascii()):
                    raise FileContentError(f"member {key!r} is not named as save_model names extra arrays")
                extra[extra_name] = read(key, EXTRA_KINDS)
    return params, hyperparameters, history, extra


def read_npz_member(archive, info, key, kinds, archive_size):
    """One .npy member as an array, reading no more bytes than the member holds.

    The header is read and checked first (version, dtype kind, shape); the
    size it implies (computed with Python integers) must equal the member's
    size, and the data is then read in chunks, so a header that claims
    more than the file holds is refused before any allocation.
    """
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise FileContentError(f"member {key!r} is damaged (stored size {info.compress_size}, "
                   f"expected {info.file_size})")
    if info.compress_size > archive_size:
        raise FileContentError(f"member {key!r} claims {info.compress_size} bytes, more than the whole file")
    with archive.open(info) as member:
        try:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(member, max_header_size=_MAX_HEADER)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(member, max_header_size=_MAX_HEADER)
            else:
                raise ValueError(f".npy version {version} is not supported")
        except (ValueError, TypeError, SyntaxError, EOFError) as exc:
            raise FileContentError(f"member {key!r} is not a .npy array ({exc})") from None
        shape, fortran_order, dtype = header
        header_size = member.tell()
        if (dtype.hasobject or dtype.fields is not None or dtype.subdtype is not None
                or dtype.kind not in kinds or dtype.itemsize == 0):
            raise FileContentError(f"member {key!r} has dtype {dtype}, expected "
                       + ("float32 or float64" if kinds == "f" else
                          "JSON text" if kinds == "U" else "an integer" if kinds == "iu" else
                          "numbers, booleans or strings"))
        if not all(isinstance(n, int) and n >= 0 for n in shape):
            raise FileContentError(f"member {key!r} has the shape {shape!r} in its header")
        count = math.prod(shape)
        nbytes = count * dtype.itemsize                  # Python integers: no overflow
        if info.file_size != header_size + nbytes:
            raise FileContentError(f"member {key!r}: its header says {shape} of {dtype} ({nbytes} bytes), "
                       f"but it holds {info.file_size - header_size} bytes")
        data = bytearray()
        while len(data) < nbytes:
            chunk = member.read(min(_CHUNK, nbytes - len(data)))
            if not chunk:
                break
            data += chunk
        if len(data) != nbytes or member.read(1):        # the last read also checks the CRC
            raise FileContentError(f"member {key!r} is truncated or damaged")
    array = np.frombuffer(data, dtype=dtype, count=count)
    return array.reshape(shape, order="F" if fortran_order else "C")


def _from_json(key, array):
    if array.shape != ():
        raise FileContentError(f"{key} is not JSON text")
    text = str(array)
    depth = _json_depth(text)
    if depth > MAX_JSON_DEPTH:
        raise FileContentError(f"{key} has lists and dicts nested {depth} levels deep, more than {MAX_JSON_DEPTH}")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise FileContentError(f"{key} is not valid JSON ({exc})") from None


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def _json_depth(text):
    """The deepest nesting of [ and { in JSON text, outside strings (no recursion)."""
    depth = deepest = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest
