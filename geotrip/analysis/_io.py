"""Reading a user's embeddings and labels, checking them, and writing outputs atomically.

Formats: ``.npy`` (memory-mapped, never unpickled), ``.npz`` (one array, or ``key=``),
``.csv`` / ``.tsv`` (numeric columns; the labels may be one of the columns, by header
name or index). Labels: integers or strings, from ``.npy``, ``.npz``, or a text file
(one label per line, or a column of a CSV/TSV). Every problem is a one-line
``ValueError`` naming the file and the problem. No JAX here.
"""

from __future__ import annotations

import csv
import hashlib
import mmap
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .._io import atomic_write_bytes, atomic_write_text

__all__ = [
    "load_embeddings",
    "load_labels",
    "check_embeddings",
    "scan_rows",
    "encode_labels",
    "file_record",
    "read_rows",
    "take_rows",
    "atomic_write_bytes",
    "atomic_write_text",
]

_TEXT_SUFFIXES = {".csv": ",", ".tsv": "\t", ".txt": None}


def _suffix(path: Path) -> str:
    return path.suffix.lower()


def _check_magic(path: Path, kind: str) -> None:
    """Reject a file that is not what its suffix says before NumPy guesses (as a pickle)."""
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    want = b"\x93NUMPY" if kind == "npy" else b"PK"
    if head.startswith(want) or (kind == "npy" and head.startswith(b"PK")):
        return
    if head[:1] == b"\x80":
        raise ValueError(f"{path}: is a Python pickle, not a .{kind} file; geotrip never unpickles")
    raise ValueError(f"{path}: not a readable .{kind} file (bad header)")


def _open_npy(path: Path) -> np.ndarray:
    _check_magic(path, "npy")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        msg = str(exc)
        if "object" in msg.lower() or "pickle" in msg.lower():
            raise ValueError(
                f"{path}: holds Python objects (a pickled/object array); "
                "geotrip never unpickles: save a numeric array"
            ) from None
        raise ValueError(f"{path}: not a readable .npy file ({msg})") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if isinstance(arr, np.lib.npyio.NpzFile):  # an .npz saved under a .npy name
        arr.close()
        raise ValueError(f"{path}: is an .npz archive; rename it to .npz and pass --key")
    return arr


def _open_npz(path: Path, key: str | None) -> np.ndarray:
    _check_magic(path, "npz")
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if key is None:
                if len(names) != 1:
                    raise ValueError(
                        f"{path}: holds {len(names)} arrays ({', '.join(names)}); pick one with key"
                    )
                key = names[0]
            if key not in names:
                raise ValueError(
                    f"{path}: no array {key!r}; it holds {', '.join(names) or 'nothing'}"
                )
            return z[key]
    except ValueError as exc:
        msg = str(exc)
        if msg.startswith(str(path)):
            raise
        if "pickle" in msg.lower() or "object" in msg.lower():
            raise ValueError(
                f"{path}: holds Python objects (a pickled/object array); geotrip never unpickles"
            ) from None
        raise ValueError(f"{path}: not a readable .npz file ({msg})") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except Exception as exc:  # zipfile.BadZipFile and friends
        raise ValueError(f"{path}: not a readable .npz file ({type(exc).__name__})") from None


def _read_table(path: Path) -> list[list[str]]:
    delim = _TEXT_SUFFIXES.get(_suffix(path))
    try:
        with open(path, newline="", encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if delim is None:
        delim = "\t" if "\t" in text.split("\n", 1)[0] else ","
    rows = [r for r in csv.reader(text.splitlines(), delimiter=delim) if any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"{path}: is empty")
    return rows


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _column_index(header: list[str] | None, column: str | int, path: Path, width: int) -> int:
    if isinstance(column, int) or (isinstance(column, str) and column.lstrip("-").isdigit()):
        j = int(column)
        if not -width <= j < width:
            raise ValueError(f"{path}: label column {j} out of range (the table has {width})")
        return j % width
    if header is None or column not in header:
        names = ", ".join(header) if header else "no header row"
        raise ValueError(f"{path}: no column named {column!r} ({names})")
    return header.index(column)


def _split_header(rows: list[list[str]], label_col: str | int | None) -> tuple[list | None, list]:
    first = [c.strip() for c in rows[0]]
    numeric = [_is_number(c) for c in first]
    if isinstance(label_col, str) and not label_col.lstrip("-").isdigit() and label_col in first:
        return first, rows[1:]
    if all(numeric):
        return None, rows
    if label_col is not None and sum(not v for v in numeric) == 1:
        # a data row whose only non-number is a string label? only if it is that column
        j = numeric.index(False)
        try:
            if _column_index(None, label_col, Path("?"), len(first)) == j:
                return None, rows
        except ValueError:
            pass
    return first, rows[1:]


def _table_embeddings(path: Path, label_col):
    rows = _read_table(path)
    header, body = _split_header(rows, label_col)
    width = len(header) if header is not None else len(rows[0])
    j = None if label_col is None else _column_index(header, label_col, path, width)
    data, labels = [], []
    for i, r in enumerate(body):
        line = i + 1 + (header is not None)
        if len(r) != width:
            raise ValueError(f"{path}: line {line} has {len(r)} fields, expected {width}")
        vals = [c for k, c in enumerate(r) if k != j]
        try:
            data.append([float(c) for c in vals])
        except ValueError:
            bad = next(c for c in vals if not _is_number(c))
            raise ValueError(f"{path}: line {line}: {bad!r} is not a number") from None
        if j is not None:
            labels.append(r[j].strip())
    if not data:
        raise ValueError(f"{path}: has a header but no data rows")
    X = np.asarray(data, dtype=np.float64)
    return X, (None if j is None else _labels_from_strings(labels))


def _labels_from_strings(values: list[str]) -> np.ndarray:
    if values and all(_is_int(v) for v in values):
        return np.asarray([int(v) for v in values], dtype=np.int64)
    return np.asarray(values, dtype=str)


def _is_int(s: str) -> bool:
    try:
        int(s)
    except ValueError:
        return False
    return True


def check_embeddings(X: Any, name: str = "embeddings") -> np.ndarray:
    """Check an embedding array's type and shape: numeric, 2-D, at least one row and column.

    Returns the array unchanged (a memory map stays a memory map).
    """
    if not isinstance(X, np.ndarray):
        try:
            X = np.asarray(X)
        except Exception as exc:
            raise ValueError(f"{name}: cannot be read as an array ({exc})") from None
    if X.dtype == object:
        raise ValueError(f"{name}: is an object array; embeddings must be numeric")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise ValueError(f"{name}: dtype {X.dtype} is not a real numeric type")
    if X.ndim != 2:
        raise ValueError(f"{name}: must be a 2-D array (points x dimensions), got shape {X.shape}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name}: is empty (shape {X.shape})")
    return X


def load_embeddings(
    path: str | os.PathLike, *, key: str | None = None, label_column: str | int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read embeddings (and, from a CSV/TSV with ``label_column``, their labels).

    Args:
      path: ``.npy`` (memory-mapped read-only), ``.npz`` (array ``key``, or its only
        array), ``.csv`` / ``.tsv`` (numeric columns, optional header row).
      key: the array of an ``.npz`` archive.
      label_column: for CSV/TSV, the column (header name or 0-based index) holding the labels.

    Returns:
      ``(X, labels)``: ``X`` of shape ``(n, d)``; ``labels`` is ``None`` unless read
      from ``label_column``.

    Raises:
      ValueError: one line naming the file and the problem (unreadable, pickled or object
        array, wrong number of dimensions, non-numeric fields, unknown key or column).
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a file")
    suffix = _suffix(path)
    labels = None
    if suffix == ".npy":
        X = _open_npy(path)
    elif suffix == ".npz":
        X = _open_npz(path, key)
    elif suffix in _TEXT_SUFFIXES:
        X, labels = _table_embeddings(path, label_column)
    else:
        raise ValueError(f"{path}: unknown format {suffix!r}; use .npy, .npz, .csv or .tsv")
    if label_column is not None and suffix not in _TEXT_SUFFIXES:
        raise ValueError(f"{path}: a label column needs a .csv or .tsv file")
    return check_embeddings(X, str(path)), labels


def load_labels(
    path: str | os.PathLike, *, key: str | None = None, column: str | int | None = None
) -> np.ndarray:
    """Read labels: integers or strings, one per embedding row.

    ``.npy`` / ``.npz`` (a 1-D integer or string array; never unpickled), or a text file
    ``.txt`` / ``.csv`` / ``.tsv`` with one label per line or several columns of which
    ``column`` (header name or 0-based index; default: the only or the last one) is used.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not a file")
    suffix = _suffix(path)
    if suffix in (".npy", ".npz"):
        y = np.asarray(_open_npy(path) if suffix == ".npy" else _open_npz(path, key))
        if y.dtype == object:
            raise ValueError(f"{path}: is an object array; labels must be integers or strings")
        if y.ndim == 2 and 1 in y.shape:
            y = y.reshape(-1)
        if y.ndim != 1:
            raise ValueError(f"{path}: labels must be a 1-D array, got shape {y.shape}")
        if np.issubdtype(y.dtype, np.floating):
            if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
                raise ValueError(f"{path}: float labels must be whole numbers")
            y = y.astype(np.int64)
        elif not (
            np.issubdtype(y.dtype, np.integer) or np.issubdtype(y.dtype, np.str_) or y.dtype == bool
        ):
            raise ValueError(f"{path}: labels of dtype {y.dtype} are not integers or strings")
        return y
    if suffix not in _TEXT_SUFFIXES:
        raise ValueError(
            f"{path}: unknown label format {suffix!r}; use .npy, .npz, .csv, .tsv, .txt"
        )
    rows = _read_table(path)
    width = len(rows[0])
    if column is None:
        j = width - 1
        header = None if width == 1 or _is_number(rows[0][j].strip()) else rows[0]
        if (
            width == 1
            and len(rows) > 1
            and not _is_int(rows[0][0])
            and all(_is_int(r[0]) for r in rows[1:])
        ):
            header = rows[0]  # a named column of integer labels
    else:
        first = [c.strip() for c in rows[0]]
        header = first if isinstance(column, str) and column in first else None
        j = _column_index(header, column, path, width)
    body = rows[1:] if header is not None else rows
    out = []
    for i, r in enumerate(body):
        if len(r) <= j:
            raise ValueError(f"{path}: line {i + 1 + (header is not None)} has no column {j}")
        out.append(r[j].strip())
    if not out:
        raise ValueError(f"{path}: has no labels")
    return _labels_from_strings(out)


def encode_labels(labels: Any, n: int, name: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """Check labels against ``n`` rows and encode them as ``int64`` codes ``0..C-1``.

    Returns ``(codes, classes)`` with ``classes[codes] == labels``.
    """
    y = np.asarray(labels)
    if y.dtype == object:
        raise ValueError(f"{name}: is an object array; labels must be integers or strings")
    if y.ndim != 1:
        raise ValueError(f"{name}: must be 1-D, got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"{name}: {y.shape[0]} labels for {n} embedding rows (must be equal)")
    if np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(f"{name}: float labels must be whole numbers")
        y = y.astype(np.int64)
    classes, codes = np.unique(y, return_inverse=True)
    return codes.astype(np.int64).reshape(-1), classes


def scan_rows(X: np.ndarray, *, chunk_rows: int = 65536, progress: bool = False):
    """One streaming pass over the rows: norms (float64) and the indices of invalid rows.

    A row is invalid when it holds a NaN or an infinity, or when its norm is zero.
    Reads ``chunk_rows`` rows at a time (a memory map is never loaded whole).

    Returns:
      ``(norms, bad_nonfinite, bad_zero)``: ``norms`` ``(n,)`` (NaN for non-finite
      rows) and two sorted int64 index arrays.
    """
    n = X.shape[0]
    norms = np.empty(n, dtype=np.float64)
    nonfinite, zero = [], []
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc="scan rows", unit="row", unit_scale=True, leave=False)
    for start in range(0, n, chunk_rows):
        block = np.asarray(read_rows(X, start, min(n, start + chunk_rows)), dtype=np.float64)
        fin = np.isfinite(block).all(axis=1)
        nrm = np.linalg.norm(np.where(fin[:, None], block, 0.0), axis=1)
        nrm[~fin] = np.nan
        norms[start : start + block.shape[0]] = nrm
        nonfinite.append(np.flatnonzero(~fin) + start)
        zero.append(np.flatnonzero(fin & (nrm == 0)) + start)
        if bar is not None:
            bar.update(block.shape[0])
    if bar is not None:
        bar.close()
    return norms, np.concatenate(nonfinite), np.concatenate(zero)


def _is_file_map(X) -> bool:
    return (
        isinstance(X, np.memmap)
        and X.filename is not None
        and X.base is not None
        and X.flags.c_contiguous
        and isinstance(X.base, mmap.mmap)
    )


def take_rows(X: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows ``X[idx]``; from a C-ordered memory map, by positioned reads (``os.pread``).

    Gathering through the map would leave every touched page (and the kernel's
    fault-around neighbours) resident; reads do not.
    """
    idx = np.asarray(idx, dtype=np.int64)
    if not _is_file_map(X):
        return np.asarray(X[idx])
    row = X.shape[1] * X.dtype.itemsize
    out = np.empty((idx.size, X.shape[1]), dtype=X.dtype)
    buf = out.reshape(-1).view(np.uint8)
    fd = os.open(X.filename, os.O_RDONLY)
    try:
        for k, i in enumerate(idx):
            data = os.pread(fd, row, X.offset + int(i) * row)
            if len(data) != row:
                raise ValueError(f"{X.filename}: short read at row {i} (file truncated?)")
            buf[k * row : (k + 1) * row] = np.frombuffer(data, dtype=np.uint8)
    finally:
        os.close(fd)
    return out


def read_rows(X: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows ``start:stop`` of ``X``; from a C-ordered memory map, by a plain file read.

    Slicing a memory map keeps the touched pages mapped (and counted in the resident
    memory) until the map is closed; a read does not, so one pass over a file larger
    than memory stays within one chunk of resident memory.
    """
    if _is_file_map(X):
        row = X.shape[1] * X.dtype.itemsize
        count = (stop - start) * X.shape[1]
        out = np.fromfile(X.filename, dtype=X.dtype, count=count, offset=X.offset + start * row)
        return out.reshape(stop - start, X.shape[1])
    return np.asarray(X[start:stop])


def file_record(path: str | os.PathLike, *, chunk: int = 1 << 22) -> dict[str, Any]:
    """``{name, size_bytes, sha256}`` of a file, hashed in chunks (the base name only: no
    absolute path in provenance records)."""
    path = Path(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return {"name": path.name, "size_bytes": path.stat().st_size, "sha256": h.hexdigest()}


def jsonable(obj: Any) -> Any:
    """Convert NumPy scalars/arrays and non-finite floats (to ``None``) for strict JSON."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if np.isfinite(v) else None
    if hasattr(obj, "item") and callable(obj.item):  # JAX scalars
        return jsonable(obj.item())
    return obj
