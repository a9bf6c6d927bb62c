"""The stacked network's file: one .npz, written by ``save_stacked``, read by ``load_stacked``.

    save_stacked(path, params, info=None) -> path
    load_stacked(path) -> (params, info)

``params`` is the fine-tuning network of ``stacked_autoencoder``:
{"stack": [{"W", "b"}, ...], "softmax": {"W"[, "b"]}}, all float32 or all
float64. Classify with ``stacked_autoencoder.predict(params, X)``:

    params, info = load_stacked("runs/stacked/stacked_model.npz")
    digits = stacked_autoencoder.predict(params, X)       # X (m, 784) in [0, 1]

What a file holds (a zip archive of .npy members, as ``numpy.savez``
writes): ``stacked_format_version`` (1); ``info``, JSON text of a dict
(the settings and results of the run that made it); ``softmax_W`` and,
if the softmax has a bias, ``softmax_b``; and for each encoder k = 0, 1,
... in order, ``stack_<k>_W`` and ``stack_<k>_b``. Nothing else.

The guarantees:

* ``save_stacked`` refuses, before anything is written, what
  ``load_stacked`` would refuse, with a TypeError or ValueError naming the
  argument: params that ``stacked_autoencoder`` refuses (shapes that do
  not chain, mixed dtypes), NaN or infinite weights, an ``info`` that is
  not a dict of JSON values that read back equal (str keys; str, int,
  float, bool, None, lists, dicts; finite floats). It then parses the
  archive it built with ``load_stacked``'s own reader and only then writes
  it, to a temporary name renamed into place: a saved file always loads
  back, equal bit for bit, and a failure never leaves half a file.
* ``load_stacked`` turns every malformed file into one ValueError naming
  the file (FileNotFoundError if there is none): not a zip archive, a
  single .npy array, a sparse autoencoder's model file (it says to load
  that with ``SparseAutoencoder.load``), another format version, missing,
  extra or misnumbered members, members that are not plain .npy arrays of
  the expected kind (object arrays are refused: nothing is ever
  unpickled), a header that claims more bytes than its member holds
  (refused before anything is allocated), info that is not JSON or not a
  dict, and weights that are not finite or whose shapes do not chain.
"""

from __future__ import annotations

import json
import os
import re
import zipfile

import numpy as np

import stacked_autoencoder as sa
from saelab.files.model_file import (FileContentError, check_file_path, parse_npz,
                                     read_npz_file, read_npz_member, write_npz_verified)

__all__ = ["save_stacked", "load_stacked", "FORMAT_VERSION", "VERSION_KEY"]

FORMAT_VERSION = 1
VERSION_KEY = "stacked_format_version"
_LAYER_MEMBER = re.compile(r"stack_(0|[1-9][0-9]{0,5})_([Wb])")


# ---------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------


def save_stacked(path, params, info=None):
    """Write the network ``params`` (and the JSON dict ``info``) to ``path`` atomically.

    Everything is checked before anything is written (see the module
    docstring); the file loads back equal with ``load_stacked``. Returns
    the path as a ``pathlib.Path``.
    """
    path = check_file_path(path)
    sa.pack(params)                                    # the structure, shapes and one dtype
    for name, array in _members_of(params).items():
        if not np.isfinite(array).all():
            raise ValueError(f"params: {_param_label(name)} holds NaN or infinite values; "
                             f"a network to save must be finite")
    info = {} if info is None else info
    text = _info_text(info)
    arrays = {VERSION_KEY: np.array(FORMAT_VERSION), "info": np.array(text),
              **_members_of(params)}
    return write_npz_verified(path, arrays, _read)


def _members_of(params):
    """{member name: array} of a network, in the file's order."""
    members = {f"softmax_{name}": params["softmax"][name]
               for name in ("W", "b") if name in params["softmax"]}
    for k, layer in enumerate(params["stack"]):
        members[f"stack_{k}_W"], members[f"stack_{k}_b"] = layer["W"], layer["b"]
    return members


def _param_label(member):
    match = _LAYER_MEMBER.fullmatch(member)
    if match:
        return f"params['stack'][{match.group(1)}]['{match.group(2)}']"
    return f"params['softmax']['{member.split('_', 1)[1]}']"


def _info_text(info):
    """info as JSON text that reads back equal, or raise naming info."""
    if not isinstance(info, dict):
        raise TypeError(f"info: expected a dict of JSON values, got {type(info).__name__}")
    try:
        text = json.dumps(info, allow_nan=False)
        same = json.loads(text) == info
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValueError(f"info: expected a dict of JSON values (str keys; str, int, finite "
                         f"float, bool, None, lists, dicts), cannot write it as JSON "
                         f"({exc})") from None
    if not same:
        raise ValueError("info: does not read back equal from JSON (tuples, non-str keys or "
                         "numpy numbers inside?); use lists, str keys and Python numbers")
    return text


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def load_stacked(path):
    """Read a file written by ``save_stacked``: returns (params, info).

    params: {"stack": [{"W", "b"}, ...], "softmax": {"W"[, "b"]}} as saved
    (same dtype, shapes and bits); info: the dict saved with it. Raises
    FileNotFoundError if there is no file, and one ValueError naming the
    file for anything else (see the module docstring).
    """
    return read_npz_file(path, _read, "stacked model file", "save_stacked")


def _read(handle, name):
    """load_stacked on an open binary file; every problem a ValueError naming ``name``."""
    return parse_npz(handle, name, _parse, "stacked model file", ".npz file")


def _parse(handle):
    start = handle.read(6)
    if not start.startswith((b"PK\x03\x04", b"PK\x05\x06")):     # the zip signatures
        raise FileContentError("not a stacked network saved by save_stacked (" + (
            "it holds a single .npy array, not an .npz archive" if start.startswith(b"\x93NUMPY")
            else "the file is empty" if not start else "it is not a zip archive, as .npz files are")
            + ")")
    handle.seek(0, os.SEEK_END)
    archive_size = handle.tell()
    handle.seek(0)
    with zipfile.ZipFile(handle) as archive:
        infos = archive.infolist()
        members = {info.filename[:-4]: info for info in infos if info.filename.endswith(".npy")}
        if VERSION_KEY not in members:
            if "format_version" in members and "W1" in members:
                raise FileContentError("it holds a sparse autoencoder (W1, b1, W2, b2), not a "
                                       "stacked network; load it with SparseAutoencoder.load")
            raise FileContentError(f"no {VERSION_KEY} member, so not a stacked network saved by "
                                   f"save_stacked")

        def read(key, kinds):
            return read_npz_member(archive, members[key], key, kinds, archive_size)

        version = read(VERSION_KEY, "iu")
        if version.shape != () or int(version) != FORMAT_VERSION:
            raise FileContentError(f"format version {version.tolist()!r}, expected {FORMAT_VERSION}")
        strays = [info.filename for info in infos if not info.filename.endswith(".npy")]
        known = (VERSION_KEY, "info", "softmax_W", "softmax_b")
        strays += [key for key in members
                   if key not in known and not _LAYER_MEMBER.fullmatch(key)]
        if strays:
            raise FileContentError(f"member {strays[0]!r} is not one that save_stacked writes")
        indices = [int(_LAYER_MEMBER.fullmatch(key).group(1)) for key in members
                   if _LAYER_MEMBER.fullmatch(key)]
        n_layers = max(indices) + 1 if indices else 0
        expected = ["info", "softmax_W"] + [f"stack_{k}_{p}" for k in range(n_layers) for p in "Wb"]
        missing = [key for key in expected if key not in members]
        if missing or n_layers == 0:
            shown = ", ".join(missing[:4]) + (f", ... ({len(missing)} in all)"
                                              if len(missing) > 4 else "")
            raise FileContentError("missing " + (shown if missing
                                     else "the encoders (stack_0_W, stack_0_b, ...)"))
        info = _info_from(read("info", "U"))
        softmax = {p: read(f"softmax_{p}", "f") for p in "Wb" if f"softmax_{p}" in members}
        stack = [{p: read(f"stack_{k}_{p}", "f") for p in "Wb"} for k in range(n_layers)]
    params = {"stack": stack, "softmax": softmax}
    try:
        sa.pack(params)                                 # shapes chain, one dtype
    except (TypeError, ValueError) as exc:
        raise FileContentError(str(exc)) from None
    for key, array in _members_of(params).items():
        if not np.isfinite(array).all():
            raise FileContentError(f"{key} holds NaN or infinite values")
    return params, info


def _info_from(array):
    if array.shape != ():
        raise FileContentError("info is not JSON text")
    try:
        info = json.loads(str(array))
    except (ValueError, RecursionError) as exc:
        raise FileContentError(f"info is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(info, dict):
        raise FileContentError(f"info is JSON {type(info).__name__}, expected a dict")
    return info

