"""Small files beside Tune's state (the sweep's ``sweeper.json``) on a local path or a shared URI.

Tune's ``storage_path`` may be a local folder or a URI that ``pyarrow.fs`` opens (``s3://bucket/prefix``, ``gs://…``).
On a multi-node cluster it must be shared: Ray refuses to persist a checkpoint from a worker node into a path that is
local to the driver. For S3-compatible stores (MinIO, Ceph, moto) the endpoint comes from the standard environment
variable ``AWS_ENDPOINT_URL_S3`` (or ``AWS_ENDPOINT_URL``), which pyarrow, boto3 and MLflow all honour, or from a
``?endpoint_override=…`` query of the URI.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

STORAGE_ENV = "SWEEPER_STORAGE_PATH"


def is_uri(path: str) -> bool:
    """Whether ``path`` names remote storage (``scheme://…``) rather than a local folder."""
    return "://" in path


def join(base: str, *parts: str) -> str:
    """``base`` with ``parts`` appended as path segments (a URI's query, e.g. ``endpoint_override``, kept)."""
    if not is_uri(base):
        return str(Path(base, *parts))
    s = urlsplit(base)
    path = "/".join([s.path.rstrip("/"), *parts])
    return urlunsplit((s.scheme, s.netloc, path, s.query, s.fragment))


def _fs(path: str):
    import pyarrow.fs

    return pyarrow.fs.FileSystem.from_uri(path)


def write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` (a local path or a URI), creating its folder."""
    if not is_uri(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text)
        return
    fs, inner = _fs(path)
    fs.create_dir(inner.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(inner) as out:
        out.write(text.encode())


def read_text(path: str) -> str | None:
    """The text at ``path`` (a local path or a URI), or ``None`` when there is no such file."""
    if not is_uri(path):
        p = Path(path)
        return p.read_text() if p.is_file() else None
    import pyarrow.fs

    fs, inner = _fs(path)
    if fs.get_file_info(inner).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(inner) as src:
        return src.read().decode()
