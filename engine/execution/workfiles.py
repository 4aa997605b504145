"""Files in a directory an evaluator controls: the one place the engine reads or writes them.

A node's work dir (``RUN_DIR/nodes/<step>/``, or a Ray worker's scratch dir) belongs to
the candidate's evaluator, which may plant anything there between two engine accesses: a
symlink or a hard link to a host file (the run's database, a secret), a FIFO, a device, a
directory swapped for a symlink. The engine (outside any sandbox) must never follow them:

- writing through a planted link would overwrite its target; and merely opening and
  closing the run's SQLite database by any descriptor drops the POSIX locks the engine
  process holds on it (SQLite's "How To Corrupt An SQLite Database File", 2.2), which
  splits its WAL between processes. So the engine never opens an inode it did not create
  or check first;
- reading an endless device (``/dev/zero``) eats memory; opening a FIFO blocks forever.

So every access goes through a ``WorkDir``: the directory is opened once with
``O_DIRECTORY|O_NOFOLLOW`` and every name is resolved relative to that descriptor,
component by component, never following a symlink.

Writing creates a fresh temporary file (``O_CREAT|O_EXCL|O_NOFOLLOW``, random name),
writes it and renames it over the final name: a rename replaces a planted symlink or hard
link as a directory entry and never opens its target.

Reading takes an ``O_PATH|O_NOFOLLOW`` handle first (it opens nothing: closing it drops no
lock, and a FIFO cannot block it), checks that handle's inode with ``fstat`` (a regular
file with one link, else refused), and only then opens that very inode for reading,
through ``/proc/self/fd`` (no window in which the name can be swapped). Without ``O_PATH``
or ``/proc`` it falls back to ``lstat`` and an ``O_NOFOLLOW|O_NONBLOCK`` open whose
``fstat`` must show the same inode. At most ``limit + 1`` bytes are ever read.

A refusal raises ``Refused`` (an OSError) with a one-line reason that names the file, e.g.
``results.json is a symlink: refused``; the Engineer puts it in the node's error.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_PATH = getattr(os, "O_PATH", 0)
_O_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_NOFOLLOW | _O_CLOEXEC
_READ_CHUNK = 1 << 20
_PROC_FD = Path("/proc/self/fd")


class Refused(OSError):
    """A file the evaluator planted (or swapped) is not used; ``str()`` is the reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class TooLarge(Refused):
    """A file holds more than the caller's limit; ``size`` is what is known of it."""

    def __init__(self, name: str, size: int, more: bool = False) -> None:
        self.size_text = f"{'more than ' if more else ''}{size} bytes"
        super().__init__(f"{name} too large ({self.size_text})")
        self.size = size


def plain_name(name: object) -> bool:
    """One path component that names an entry of the directory itself (no ``/``, no
    ``.``/``..``, no NUL): what may be accepted from a Ray worker."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\x00" not in name
    )


def last_unresolved(path: Path) -> Path:
    """``path`` absolute with its parent resolved and its last component kept as it is, so
    that a symlink planted in place of the directory is refused, not followed."""
    path = Path(path)
    if path.name in ("", ".", ".."):
        return path.resolve()
    return path.parent.resolve() / path.name


def describe(st: os.stat_result) -> str:
    """What a non-regular file is, for a refusal."""
    mode = st.st_mode
    for test, what in (
        (stat.S_ISLNK, "a symlink"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO, not a regular file"),
        (stat.S_ISSOCK, "a socket, not a regular file"),
        (stat.S_ISCHR, "a character device, not a regular file"),
        (stat.S_ISBLK, "a block device, not a regular file"),
    ):
        if test(mode):
            return what
    return "not a regular file"


class WorkDir:
    """An open evaluator-controlled directory; names are relative to it (``a/b`` allowed
    for writes, each directory component checked). Use as a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.fd = os.open(self.path, _O_DIR)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR) and os.path.islink(self.path):
                raise Refused(f"the work dir {self.path} is a symlink: refused") from None
            raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> WorkDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ writing
    def write(self, name: str, data: str | bytes) -> None:
        """Replace ``name`` with a new file holding ``data`` (str: UTF-8); never opens or
        truncates what is there. Missing directories of ``a/b/name`` are created."""
        parts = _parts(name)
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        opened: list[int] = []
        parent = self.fd
        try:
            for part in parts[:-1]:
                parent = _subdir(parent, part)
                opened.append(parent)
            _replace(parent, parts[-1], raw)
        finally:
            for fd in opened:
                os.close(fd)

    def remove(self, name: str) -> None:
        """Remove the entry ``name`` (a plain name) if there is one; a link is removed, not
        its target."""
        _check_plain(name)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=self.fd)

    def exists(self, name: str) -> bool:
        """Whether an entry ``name`` exists, whatever it is (links are not followed)."""
        _check_plain(name)
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    # ------------------------------------------------------------------ reading
    def read(self, name: str, limit: int) -> bytes:
        """The content of the regular file ``name`` (a plain name), at most ``limit`` bytes.

        Raises FileNotFoundError when it is missing, ``TooLarge`` when it holds more than
        ``limit`` bytes, ``Refused`` for a symlink, a non-regular file, a file with more
        than one hard link or one swapped while it was opened.
        """
        _check_plain(name)
        if _O_PATH and _PROC_FD.is_dir():
            handle = os.open(name, _O_PATH | os.O_NOFOLLOW | _O_CLOEXEC, dir_fd=self.fd)
            try:
                expected = os.fstat(handle)
                _check_regular(name, expected)
                # The very inode checked above: a name swapped since cannot matter.
                fd = os.open(f"{_PROC_FD}/{handle}", os.O_RDONLY | os.O_NONBLOCK | _O_CLOEXEC)
            finally:
                os.close(handle)
        else:
            expected = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
            _check_regular(name, expected)
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _O_CLOEXEC
            fd = os.open(name, flags, dir_fd=self.fd)
        try:
            got = os.fstat(fd)
            if (got.st_dev, got.st_ino) != (expected.st_dev, expected.st_ino):
                raise Refused(f"{name} changed while it was opened: refused")
            _check_regular(name, got)
            if got.st_size > limit:
                raise TooLarge(name, got.st_size)
            return _read_bounded(fd, name, limit)
        finally:
            os.close(fd)

    def collect(
        self,
        suffixes: tuple[str, ...],
        max_bytes: int,
        max_files: int = 100,
        max_total: int = 16 << 20,
        first: tuple[str, ...] = (),
    ) -> dict[str, bytes]:
        """The regular files of this directory (no subdirectories) whose names end with
        one of ``suffixes``: each at most ``max_bytes``, at most ``max_files`` of them and
        ``max_total`` bytes in all; names ending with one of ``first`` are taken first.
        Links, special files and larger files are left out."""
        names = sorted(os.listdir(self.fd), key=lambda n: (not n.endswith(first), n))
        files: dict[str, bytes] = {}
        total = 0
        for name in names:
            if len(files) >= max_files:
                break
            if not plain_name(name) or not name.endswith(suffixes):
                continue
            try:
                data = self.read(name, min(max_bytes, max_total - total))
            except OSError:
                continue
            files[name] = data
            total += len(data)
        return files


def _parts(name: str) -> list[str]:
    parts = name.split("/") if isinstance(name, str) else []
    if not parts or not all(plain_name(p) for p in parts):
        raise Refused(f"{name!r:.80} is not a relative file name: refused")
    return parts


def _check_plain(name: str) -> None:
    if not plain_name(name):
        raise Refused(f"{name!r:.80} is not a plain file name: refused")


def _check_regular(name: str, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise Refused(f"{name} is {describe(st)}: refused")
    if st.st_nlink > 1:
        raise Refused(f"{name} has {st.st_nlink} hard links: refused")


def _subdir(parent: int, part: str) -> int:
    """An open directory ``part`` of ``parent`` (created when missing); never a link."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(part, dir_fd=parent)
    try:
        return os.open(part, _O_DIR, dir_fd=parent)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
            raise
        st = os.stat(part, dir_fd=parent, follow_symlinks=False)
        raise Refused(f"{part} is {describe(st)}: refused") from None


def _replace(parent: int, name: str, data: bytes) -> None:
    """Write ``data`` to a new file and rename it over ``name`` in ``parent``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _O_CLOEXEC
    for _ in range(100):
        temp = f".asi-evolve-{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(temp, flags, 0o666, dir_fd=parent)
            break
        except FileExistsError:
            continue
    else:
        raise Refused(f"no free temporary name to write {name}: refused")
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=parent)
        raise


def _read_bounded(fd: int, name: str, limit: int) -> bytes:
    """At most ``limit`` bytes of ``fd``; TooLarge when there are more."""
    chunks: list[bytes] = []
    got = 0
    while got <= limit:
        try:
            chunk = os.read(fd, min(_READ_CHUNK, limit + 1 - got))
        except BlockingIOError:  # a regular file never blocks; be safe anyway
            break
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    if got > limit:  # it grew after the fstat
        raise TooLarge(name, limit, more=True)
    return b"".join(chunks)
