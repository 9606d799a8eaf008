"""Reading embedding clouds made anywhere: CSV, Parquet, ``.npy`` and ``.npz`` files, one cloud per file or one
table with a class column.

Formats (chosen by suffix; anything else is refused):

* ``.csv`` -- as ``pandas.DataFrame.to_csv`` writes it: a header row with the dimension names, and a first column
  that is the index or an image file name (``0001.png``) when it is unnamed, named ``index`` / ``file`` /
  ``filename`` / ``image``, or not numeric. This is how proj18 saved its embeddings, one file per class.
* ``.parquet`` -- this project's embeddings layout (``index, label, class_name, augmentation, dim_0 ...``), or any
  table of numeric columns, optionally with a ``class_name`` or ``label`` column.
* ``.npy`` -- one 2-D array. Read with ``allow_pickle=False``: an object array is refused, nothing is unpickled.
* ``.npz`` -- one 2-D array per class key (``allow_pickle=False``).

Every cloud is returned as float64 ``(n, d)``. Bad input raises :class:`EmbeddingFileError` (a ``ValueError``) with
a message naming the file and, for a NaN/inf value, the row.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

SUFFIXES = (".csv", ".parquet", ".npy", ".npz")
CLASS_COLUMNS = ("class_name", "label")
INDEX_NAMES = ("", "index", "file", "filename", "file_name", "image", "path")
LAYOUT_COLUMNS = ("index", "label", "class_name", "augmentation")


class EmbeddingFileError(ValueError):
    """An embedding file that cannot be read as a cloud (format, shape, values)."""


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise EmbeddingFileError(
            f"{path}: unknown embedding format {suffix or '(no suffix)'!r}; expected one of {', '.join(SUFFIXES)}"
        )
    return suffix


def _is_index_column(name: object, values: pd.Series) -> bool:
    """Whether a CSV's first column is an index or file name rather than a dimension."""
    label = str(name).strip().lower()
    return label.startswith("unnamed:") or label in INDEX_NAMES or not pd.api.types.is_numeric_dtype(values)


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame whose index is the file's row names (index column, file name or row
    number) and whose columns are the dimensions plus, when present, one class column."""
    p = Path(path)
    suffix = _suffix(p)
    if suffix not in (".csv", ".parquet"):
        raise EmbeddingFileError(f"{p}: not a table (CSV or Parquet)")
    try:
        frame = pd.read_csv(p) if suffix == ".csv" else pd.read_parquet(p)
    except Exception as exc:  # pandas/pyarrow raise many types for a file that is not what its suffix says
        raise EmbeddingFileError(f"{p}: cannot be read as {suffix[1:]}: {str(exc).splitlines()[0]}") from exc
    if suffix == ".csv" and len(frame) and len(frame.columns) and _is_index_column(frame.columns[0], frame.iloc[:, 0]):
        frame = frame.set_index(frame.columns[0])
    elif suffix == ".parquet" and any(str(c).startswith("dim_") for c in frame.columns):
        keep = [c for c in frame.columns if str(c).startswith("dim_") or c == "class_name"]
        frame = frame.set_index("index")[keep] if "index" in frame.columns else frame[keep]
    return frame


def _class_column(frame: pd.DataFrame) -> str | None:
    return next((c for c in CLASS_COLUMNS if c in frame.columns), None)


def _numeric(frame: pd.DataFrame, path: Path) -> np.ndarray:
    """The frame's dimension columns as a checked float64 array."""
    if frame.empty:
        raise EmbeddingFileError(f"{path}: empty cloud ({len(frame)} rows, {len(frame.columns)} columns)")
    bad = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise EmbeddingFileError(
            f"{path}: non-numeric column {bad[0]!r} (only dimensions and one class column allowed)"
        )
    return check_cloud(frame.to_numpy(np.float64), path, list(frame.index))


def check_cloud(x: np.ndarray, path: str | os.PathLike, row_names: list | None = None) -> np.ndarray:
    """``x`` as float64 ``(n, d)``, refusing an empty cloud, a non-2-D array and any NaN/inf row (named by its row
    name when given, else its 0-based row number)."""
    if x.dtype == object or not np.issubdtype(x.dtype, np.number):
        raise EmbeddingFileError(f"{path}: non-numeric array of dtype {x.dtype}")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise EmbeddingFileError(f"{path}: expected a 2-D array (points x dimensions), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise EmbeddingFileError(f"{path}: empty cloud (shape {x.shape})")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        name = row_names[row] if row_names is not None else row
        raise EmbeddingFileError(f"{path}: row {name!r} has a NaN or infinite value")
    return x


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {key: archive[key] for key in archive.files}
    except ValueError as exc:  # an object array: refused rather than unpickled
        raise EmbeddingFileError(f"{path}: holds an object array, which is not read (no pickle): {exc}") from exc
    except Exception as exc:
        raise EmbeddingFileError(f"{path}: cannot be read as .npz: {str(exc).splitlines()[0]}") from exc


def _npy_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise EmbeddingFileError(f"{path}: holds an object array, which is not read (no pickle): {exc}") from exc
    except Exception as exc:
        raise EmbeddingFileError(f"{path}: cannot be read as .npy: {str(exc).splitlines()[0]}") from exc


def read_cloud(path: str | os.PathLike) -> np.ndarray:
    """One cloud from one file (the reference): every row of a table (a class column, if any, is ignored), the
    array of a ``.npy``, or the single array of a ``.npz``."""
    p = Path(path)
    suffix = _suffix(p)
    if suffix == ".npy":
        return check_cloud(_npy_array(p), p)
    if suffix == ".npz":
        arrays = _npz_arrays(p)
        if len(arrays) != 1:
            raise EmbeddingFileError(f"{p}: a reference .npz must hold one array, found {sorted(arrays)}")
        return check_cloud(next(iter(arrays.values())), p)
    frame = read_table(p)
    column = _class_column(frame)
    return _numeric(frame.drop(columns=[column]) if column else frame, p)


def _split_by_class(frame: pd.DataFrame, column: str, path: Path) -> dict[str, np.ndarray]:
    dims = frame.drop(columns=[column])
    return {str(c): _numeric(dims[frame[column] == c], path) for c in pd.unique(frame[column])}


def read_clouds(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Evaluation clouds by class name: a folder with one file per class (the class is the file's stem), one table
    with a ``class_name`` or ``label`` column, or one ``.npz`` with an array per class key."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in SUFFIXES)
        if not files:
            raise EmbeddingFileError(f"{p}: no embedding files ({', '.join(SUFFIXES)}) in this folder")
        clouds = {f.stem: read_cloud(f) for f in files}
    elif not p.exists():
        raise EmbeddingFileError(f"{p}: no such file or folder")
    elif _suffix(p) == ".npz":
        clouds = {key: check_cloud(x, f"{p}[{key}]") for key, x in _npz_arrays(p).items()}
    elif _suffix(p) == ".npy":
        raise EmbeddingFileError(
            f"{p}: a .npy holds one cloud; evaluation clouds need a folder, an .npz or a table with a class column"
        )
    else:
        frame = read_table(p)
        column = _class_column(frame)
        if column is None:
            raise EmbeddingFileError(f"{p}: a single evaluation table needs a 'class_name' or 'label' column")
        clouds = _split_by_class(frame, column, p)
    check_dimensions(clouds, p)
    return clouds


def check_dimensions(
    clouds: Mapping[str, np.ndarray], source: str | os.PathLike, reference: np.ndarray | None = None
) -> int:
    """The common dimension of every cloud (and of ``reference``); refuses clouds whose dimensions differ."""
    dims = {name: x.shape[1] for name, x in clouds.items()}
    if reference is not None:
        dims = {"reference": reference.shape[1], **dims}
    if len(set(dims.values())) > 1:
        first = next(iter(dims))
        odd = next(n for n, d in dims.items() if d != dims[first])
        raise EmbeddingFileError(f"{source}: dimensions differ: {first!r} has {dims[first]}, {odd!r} has {dims[odd]}")
    return next(iter(dims.values()))
