"""The landing folder is untrusted: list it and open its files without following anything.

Anyone who can drop a file there can also drop a symbolic link (``leak.csv -> $CLM_HOME/...``), a hard
link to a file they cannot read themselves, a FIFO that blocks a reader forever, or a file far larger than
memory. So:

- the listing never follows links (``scandir`` with ``follow_symlinks=False``); an entry with a data
  extension that is not a regular file is offered for ingestion all the same, to be refused by
  :func:`open_untrusted` and quarantined as a whole, so the refusal is recorded and visible;
- :func:`open_untrusted` checks the entry with ``lstat`` before opening it (a device or FIFO is never
  opened), opens it with ``O_NOFOLLOW | O_NONBLOCK``, checks the open descriptor again with ``fstat``
  (same inode, still a regular file), and the caller reads only from that descriptor, never the path
  again, so swapping the file after the checks changes nothing;
- a regular file with more than one hard link is refused unless ``data.allow_hard_links``: its content is
  also reachable under another name, which may be a file outside the landing folder;
- a file over ``data.max_file_bytes`` is refused before a byte of it is read.

A refusal is a :class:`FileRefused`: the ingest step records it as one quarantine row describing the file
(name, reason, size: never its content) and moves the entry to ``failed/``. The landing folder itself is
configuration, so a symlinked ``paths.landing`` is followed; ``processed/`` and ``failed/`` are not.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from clm_lib.config import DataConfig
from clm_lib.data.records import Problem
from clm_lib.errors import IngestError

_KINDS = [
    (stat.S_ISREG, "regular file"),
    (stat.S_ISLNK, "symbolic link"),
    (stat.S_ISDIR, "directory"),
    (stat.S_ISFIFO, "FIFO (named pipe)"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
]


class FileRefused(IngestError):
    """A landing file that is not read at all, or not further: quarantined as a whole with ``reason``."""

    def __init__(self, reason: Problem, detail: str, st: os.stat_result | None = None) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail
        self.size = st.st_size if st is not None and stat.S_ISREG(st.st_mode) else None
        # Names the directory entry, not its content (which was not read): the same entry found again after
        # a crash gets the same batch.
        self.fingerprint = "" if st is None else f"{kind(st)}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"


def kind(st: os.stat_result) -> str:
    """What a directory entry is, in words."""
    return next((name for test, name in _KINDS if test(st.st_mode)), "special file")


def size_words(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # unreachable


def _check(name: str, st: os.stat_result, data: DataConfig) -> None:
    what = kind(st)
    if stat.S_ISLNK(st.st_mode):
        raise FileRefused(Problem.SYMLINK, f"{name} is a symbolic link: clm never follows links in the landing "
                          "folder, so what it points to was not read", st)
    if not stat.S_ISREG(st.st_mode):
        raise FileRefused(Problem.SPECIAL_FILE, f"{name} is a {what}, not a regular file: not read", st)
    if st.st_nlink > 1 and not data.allow_hard_links:
        raise FileRefused(Problem.HARD_LINK, f"{name} has {st.st_nlink} hard links: its content is also reachable "
                          "under another name, possibly outside the landing folder, so it was not read (copy the "
                          "file instead of linking it, or set data.allow_hard_links)", st)
    if st.st_size > data.max_file_bytes:
        raise FileRefused(Problem.FILE_TOO_LARGE, f"{name} is {size_words(st.st_size)} ({st.st_size} bytes), over "
                          f"data.max_file_bytes ({data.max_file_bytes}): split it into smaller files or raise the "
                          "limit; nothing of it was read", st)


@contextmanager
def open_untrusted(path: Path, data: DataConfig) -> Iterator[tuple[BinaryIO, os.stat_result]]:
    """The landing file ``path`` open for reading, and its ``fstat``; raises :class:`FileRefused` (see the
    module docstring), or :class:`IngestError` when it vanished or cannot be opened."""
    name = path.name
    try:
        before = os.lstat(path)
        _check(name, before, data)
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileRefused:
        raise
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # became a link between lstat and open
            raise FileRefused(Problem.SYMLINK, f"{name} became a symbolic link while being opened: not read") from None
        raise IngestError(f"cannot open {path}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (before.st_dev, before.st_ino):
            raise FileRefused(Problem.SPECIAL_FILE, f"{name} was replaced while being opened: not read", st)
        _check(name, st, data)
        os.set_blocking(fd, True)
        fh = os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise
    with fh:
        yield fh, st


def read_capped(fh: BinaryIO, name: str, data: DataConfig, st: os.stat_result) -> bytes:
    """All of ``fh``, refusing a file that grew past ``data.max_file_bytes`` after it was checked."""
    content = fh.read(data.max_file_bytes + 1)
    if len(content) > data.max_file_bytes:
        raise FileRefused(Problem.FILE_TOO_LARGE, f"{name} grew past data.max_file_bytes ({data.max_file_bytes}) "
                          "while being read: split it into smaller files or raise the limit", st)
    return content


def list_landing(landing: Path, formats: list[str], extensions: dict[str, str]) -> list[tuple[Path, bool]]:
    """Entries of ``landing`` to ingest, oldest first, each with whether it is a regular file.

    Hidden entries (writers should land files as ``.name`` and rename them) and names without one of
    ``formats``' extensions are left alone; ``OSError`` is the caller's to report.
    """
    found = []
    for entry in os.scandir(landing):
        if entry.name.startswith("."):
            continue
        fmt = extensions.get(Path(entry.name).suffix.lower())
        if fmt is None or fmt not in formats:
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        found.append((st.st_mtime, entry.name, Path(entry.path), stat.S_ISREG(st.st_mode)))
    return [(p, regular) for *_, p, regular in sorted(found)]


def subfolder(landing: Path, name: str) -> Path:
    """``landing/name``, created if missing; refused when it is anything but a real directory, because a
    file moved through a planted link would be written wherever the link points."""
    folder = landing / name
    try:
        folder.mkdir(exist_ok=True)
        st = os.lstat(folder)
    except OSError as exc:
        raise IngestError(f"cannot create {folder}: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise IngestError(f"{folder} is a {kind(st)}, not a folder: remove it so clm can move files there")
    return folder


def move(path: Path, folder: Path, tag: str) -> Path:
    """Rename the entry ``path`` (itself, never what it points to) into ``folder``; a name already taken
    gets ``.<tag>`` before its extension, so both are kept."""
    target = folder / path.name
    if os.path.lexists(target):
        target = folder / f"{path.stem}.{tag}{path.suffix}"
    try:
        os.rename(path, target)  # same file system: never copies, so a FIFO or link is moved, not read
    except OSError as exc:
        raise IngestError(f"cannot move {path} to {folder}: {exc.strerror or exc}") from None
    return target


def write_note(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` in a folder others can write to: never through a planted link."""
    with suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
