"""Where an ``image_folder`` dataset's files are: the listing of a folder or an archive (``.tar``, ``.tar.gz`` /
``.tgz``, ``.zip``) read as a :class:`Layout` of ``<split>/<class>/<file>`` images, and the files' bytes.

Listing only: nothing here decodes an image (:mod:`experiments.data.image_folder` does). An archive is read in
place, never unpacked; its members are only ever read as bytes (no member is extracted to disk, links and devices are
skipped), so a member's name cannot write anywhere.

Layout rules: ``train/`` and ``test/`` at the top of the source, or inside its single top-level folder (the form
``tar czf data.tar.gz data/`` writes). A class is a folder directly under a split; its images are the JPEG and PNG
files directly in it (``.jpg``, ``.jpeg``, ``.png``, any case). Names starting with ``.`` and ``__MACOSX`` are
ignored, and so are other files and deeper folders.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

from experiments.data.base import DatasetCorruptError, DatasetNotFoundError

log = logging.getLogger(__name__)

SPLITS = ("train", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".zip")
#: Errors that mean an archive is not a readable archive of its kind.
ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError)


@dataclass(frozen=True)
class Entry:
    """One regular file of the source.

    Attributes:
        member: The name to read it by: the archive member's name, or the path relative to a folder root.
        path: ``member`` normalised (``/``-separated, no leading ``./``).
        size: Size in bytes.
        mtime: Modification time (nanoseconds for a folder's files, the member's header time in an archive).
    """

    member: str
    path: str
    size: int
    mtime: int


@dataclass(frozen=True)
class Image:
    """One image of the layout: its split, its label (index into :attr:`Layout.classes`) and its file."""

    split: str
    label: int
    entry: Entry


@dataclass(frozen=True)
class Layout:
    """A checked ``<split>/<class>/<file>`` listing of a source.

    Attributes:
        root: The source (a folder or an archive), absolute.
        kind: ``"folder"``, ``"tar"`` or ``"zip"``.
        prefix: The single top folder holding ``train/`` and ``test/`` (with its trailing ``/``), or ``""``.
        classes: The class folder names, sorted; both splits hold exactly these.
        images: Every image, ordered by split (train first), label, then file path.
    """

    root: str
    kind: str
    prefix: str
    classes: tuple[str, ...]
    images: tuple[Image, ...]

    def describe(self, entry: Entry) -> str:
        """Where a file is, as a message names it: its path, or ``<archive> member <name>``."""
        if self.kind == "folder":
            return os.path.join(self.root, *entry.member.split("/"))
        return f"{self.root} member {entry.member}"

    def key(self, image_size: int, version: str) -> str:
        """The cache key: SHA-256 of ``version`` (the decoder's), ``image_size``, the classes and every image's split,
        label, path below the prefix, size and modification time (so any added, removed, renamed, resized or touched
        image changes it; the archive's own path and time do not enter, nor does the prefix)."""
        listing = [
            [i.split, i.label, i.entry.path[len(self.prefix) :], i.entry.size, i.entry.mtime] for i in self.images
        ]
        blob = json.dumps([version, image_size, list(self.classes), listing], separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def archive_kind(path: str) -> str | None:
    """``"tar"`` or ``"zip"`` for a name ending in one of :data:`ARCHIVE_SUFFIXES`, else ``None``."""
    lower = path.lower()
    if lower.endswith(".zip"):
        return "zip"
    return "tar" if lower.endswith((".tar", ".tar.gz", ".tgz")) else None


def resolve_root(root: str | os.PathLike | None) -> tuple[str, str]:
    """``root`` made absolute, with its kind (``folder``, ``tar``, ``zip``); ``DatasetNotFoundError`` when it is
    unset, absent, or a file that is not an archive of :data:`ARCHIVE_SUFFIXES`."""
    if not root:
        raise DatasetNotFoundError(
            "dataset 'image_folder' needs dataset.root: a folder holding train/<class>/ and test/<class>/ images, "
            "or a .tar, .tar.gz or .zip of one"
        )
    path = os.path.abspath(os.path.expanduser(os.fspath(root)))
    if os.path.isdir(path):
        return path, "folder"
    if not os.path.exists(path):
        raise DatasetNotFoundError(
            f"image_folder root {path} not found (expected a folder holding train/<class>/ and test/<class>/ "
            "images, or a .tar, .tar.gz or .zip of one)"
        )
    kind = archive_kind(path)
    if kind is None:
        raise DatasetNotFoundError(
            f"image_folder root {path} is a file but not a {', '.join(ARCHIVE_SUFFIXES)} archive (or give a folder)"
        )
    return path, kind


def _is_image(name: str) -> bool:
    return not _ignored(name) and os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def _walk_folder(root: str, full: bool) -> tuple[list[Entry], set[str]]:
    """Files and folders of ``root`` down to its class folders (``[<top>/]<split>/<class>/``) and their files.
    ``full=False``: one image per class folder is enough (the first found, no ``stat``): the classes and the
    empty-class check need no more, and a class folder of 5 000 files is not read to its end."""
    files: list[Entry] = []
    dirs: set[str] = set()
    pending = [""]
    while pending:
        rel = pending.pop()
        parts = rel.split("/")[:-1]
        in_class = len(parts) >= 2 and parts[-2] in SPLITS
        try:
            with os.scandir(os.path.join(root, rel)) as it:
                for e in it:
                    name = f"{rel}{e.name}"
                    if e.is_dir():
                        dirs.add(name)
                        if not in_class and len(parts) < 3:
                            pending.append(name + "/")
                    elif e.is_file():
                        st = e.stat() if full else None
                        files.append(Entry(name, name, st.st_size if st else 0, st.st_mtime_ns if st else 0))
                        if in_class and not full and _is_image(e.name):
                            break
        except OSError as exc:
            raise DatasetNotFoundError(f"cannot list {os.path.join(root, rel)}: {exc.strerror or exc}") from None
    return files, dirs


def _normalise(name: str) -> str:
    """An archive member's name as a relative ``/`` path (``./a//b/`` → ``a/b``)."""
    return "/".join(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))


def _list_tar(path: str) -> tuple[list[Entry], set[str]]:
    """A tar's regular files (a name stored twice: the last, as ``tar x`` would leave it) and folders."""
    files: dict[str, Entry] = {}
    dirs = set()
    with tarfile.open(path, "r:*") as tf:
        for m in tf:
            if m.isfile():
                files[m.name] = Entry(m.name, _normalise(m.name), int(m.size), int(m.mtime))
            elif m.isdir():
                dirs.add(_normalise(m.name))
    return list(files.values()), dirs


def _list_zip(path: str) -> tuple[list[Entry], set[str]]:
    """A zip's files (a name stored twice: the last, the one ``ZipFile.read`` returns) and folders."""
    files: dict[str, Entry] = {}
    dirs = set()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if info.is_dir():
                dirs.add(_normalise(info.filename))
            else:
                stamp = int("".join(f"{v:02d}" for v in info.date_time))
                files[info.filename] = Entry(info.filename, _normalise(info.filename), int(info.file_size), stamp)
    return list(files.values()), dirs


@functools.lru_cache(maxsize=8)
def _list_archive_cached(path: str, kind: str, size: int, mtime_ns: int, inode: int) -> tuple[tuple, frozenset]:
    """An archive's listing, kept per process for as long as the archive's size, time and inode stay the same (a
    ``.tar.gz`` is listed by decompressing all of it: 1.6 s for the 60 000 CIFAR-10 JPEGs)."""
    try:
        files, dirs = _list_zip(path) if kind == "zip" else _list_tar(path)
    except ARCHIVE_ERRORS as exc:
        raise DatasetCorruptError(f"{path} is not a readable {kind} archive: {_reason(exc)}") from None
    return tuple(files), frozenset(dirs)


def forget_listings() -> None:
    """Empty this process's cache of archive listings (the next listing reads the archive again)."""
    _list_archive_cached.cache_clear()


def list_source(root: str, kind: str, full: bool) -> tuple[list[Entry], set[str]]:
    """Every regular file and folder of the source, with sizes and times (a folder with ``full=False``: see
    :func:`_walk_folder`; an archive is always listed in full, once per process)."""
    if kind == "folder":
        return _walk_folder(root, full)
    st = os.stat(root)
    files, dirs = _list_archive_cached(root, kind, st.st_size, st.st_mtime_ns, st.st_ino)
    return list(files), set(dirs)


def _ignored(part: str) -> bool:
    return part.startswith(".") or part == "__MACOSX"


def _find_prefix(files: list[Entry], dirs: set[str]) -> str:
    """``""`` when a split folder is at the top, else the single top-level folder's name plus ``/`` (if there is
    exactly one that is not ignored), else ``""``."""
    tops = {p.split("/", 1)[0] for p in [e.path for e in files if "/" in e.path] + list(dirs)}
    tops -= {t for t in tops if _ignored(t)}
    if tops & set(SPLITS) or len(tops) != 1:
        return ""
    return f"{tops.pop()}/"


def build_layout(root: str, kind: str, files: list[Entry], dirs: set[str]) -> Layout:
    """Check a listing and order its images; the refusals name the root (and the top folder, if any).

    Raises:
        DatasetNotFoundError: ``train/`` or ``test/`` is missing.
        DatasetCorruptError: the splits hold different classes, a split holds no class, or a class no image.
    """
    prefix = _find_prefix(files, dirs)
    where = f"image_folder root {root}" + (f" (top folder {prefix[:-1]})" if prefix else "")
    split_seen = set()
    per_class: dict[str, dict[str, list[Entry]]] = {s: {} for s in SPLITS}
    below = [(d[len(prefix) :].split("/"), None) for d in dirs if d.startswith(prefix)]
    below += [(e.path[len(prefix) :].split("/"), e) for e in files if e.path.startswith(prefix)]
    for parts, entry in below:
        if parts[0] not in SPLITS:
            continue
        split_seen.add(parts[0])
        if len(parts) < 2 or (entry is not None and len(parts) == 2) or _ignored(parts[1]):
            continue
        images = per_class[parts[0]].setdefault(parts[1], [])
        if entry is not None and len(parts) == 3 and _is_image(parts[2]):
            images.append(entry)
    for split in SPLITS:
        if split not in split_seen:
            raise DatasetNotFoundError(
                f"{where} has no {split}/ folder (expected train/<class>/ and test/<class>/ holding JPEG or PNG images)"
            )
        if not per_class[split]:
            raise DatasetCorruptError(f"{where}: {split}/ holds no class folder")
    train, test = set(per_class["train"]), set(per_class["test"])
    if train != test:
        raise DatasetCorruptError(
            f"{where}: train/ and test/ hold different classes (only in train/: {', '.join(sorted(train - test)) or '-'};"
            f" only in test/: {', '.join(sorted(test - train)) or '-'})"
        )
    classes = tuple(sorted(train))
    for split in SPLITS:
        for c in classes:
            if not per_class[split][c]:
                raise DatasetCorruptError(f"{where}: class {c!r} of {split}/ holds no JPEG or PNG image")
    images = tuple(
        Image(split, label, entry)
        for split in SPLITS
        for label, c in enumerate(classes)
        for entry in sorted(per_class[split][c], key=lambda e: e.path)
    )
    return Layout(root, kind, prefix, classes, images)


def scan(root: str | os.PathLike | None, full: bool = True) -> Layout:
    """The checked layout of ``root`` (a folder or an archive). ``full=False`` lists a folder only as far as the
    checks and class names need (its ``images`` are then a sample: not for decoding or a cache key)."""
    path, kind = resolve_root(root)
    files, dirs = list_source(path, kind, full)
    return build_layout(path, kind, files, dirs)


def read_payloads(layout: Layout, chunk_size: int) -> Iterator[list[tuple[int, bytes | str]]]:
    """Every image as chunks of ``(index into layout.images, payload)``: for a folder the file's path (whoever
    decodes it reads it, so reading runs in parallel too), for an archive its bytes, read here: a tar in its own
    member order (one sequential pass over a compressed stream), a zip in layout order.

    Raises:
        DatasetCorruptError: the archive cannot be read to the end (truncated, bad compressed data).
    """
    index = {img.entry.member: k for k, img in enumerate(layout.images)}
    chunk: list[tuple[int, bytes | str]] = []
    try:
        for k, payload in _payloads(layout, index):
            chunk.append((k, payload))
            if len(chunk) >= chunk_size:
                yield chunk
                chunk = []
    except ARCHIVE_ERRORS as exc:
        raise DatasetCorruptError(f"{layout.root} is not a readable {layout.kind} archive: {_reason(exc)}") from None
    if chunk:
        yield chunk


def _payloads(layout: Layout, index: dict[str, int]) -> Iterator[tuple[int, bytes | str]]:
    if layout.kind == "folder":
        for k, img in enumerate(layout.images):
            yield k, layout.describe(img.entry)
    elif layout.kind == "zip":
        with zipfile.ZipFile(layout.root) as zf:
            for k, img in enumerate(layout.images):
                yield k, zf.read(img.entry.member)
    else:
        with tarfile.open(layout.root, "r:*") as tf:
            for m in tf:
                k = index.get(m.name)
                if k is not None and m.isfile():
                    fh = tf.extractfile(m)
                    yield k, fh.read() if fh is not None else b""


def _reason(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
