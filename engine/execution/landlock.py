"""Landlock through its three system calls (ctypes), with the kernel's ABI version detected.

Landlock (Linux >= 5.13) lets an unprivileged process restrict itself and everything it
starts afterwards: file-system access by path (ABI 1-3, 5), TCP ports (ABI 4, unused
here) and, from ABI 6 (Linux 6.12), *scopes*: no signal to, and no connection to an
abstract unix socket of, a process outside the restricted domain. It is applied in two
halves (``engine/execution/supervisor.py``):

* :func:`ruleset` builds the rules into a file descriptor (after the mounts: a rule
  made before a new file system is mounted does not see it);
* in the evaluator, just before exec, :func:`restrict_self` sets ``no_new_privs`` and
  enforces that descriptor: two system calls.

A restricted process can no longer mount or unmount anything, so namespaces and mounts
must be set up before :func:`restrict_self`. Landlock does not govern ``chmod``,
``chown`` or ``utime`` (the read-only mounts of the supervisor do). The module keeps to
cheap imports: the supervisor is a fresh interpreter per evaluation.
"""

from __future__ import annotations

import ctypes
import os
import stat
import struct

TYPE_CHECKING = False
if TYPE_CHECKING:  # no import at run time: the supervisor starts fresh for every evaluation
    from collections.abc import Iterable

SYS_CREATE_RULESET, SYS_ADD_RULE, SYS_RESTRICT_SELF = 444, 445, 446  # same on every arch
CREATE_RULESET_VERSION = 1 << 0
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38

# File-system access rights (include/uapi/linux/landlock.h) and the ABI that added them.
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5 (left unhandled: GPU drivers and terminals need ioctls)
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
SCOPE_SIGNAL = 1 << 1  # ABI 6

ABI1_FS = (1 << 13) - 1
READ = EXECUTE | READ_FILE | READ_DIR
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV  # valid on a non-dir
# A writable directory: everything but device nodes (mknod of a disk would bypass it all).
WRITE_DIR = (ABI1_FS | REFER | TRUNCATE) & ~(MAKE_CHAR | MAKE_BLOCK)
# A writable device (or a directory of devices: /dev/pts, /dev/dri).
DEVICE = READ_FILE | WRITE_FILE | TRUNCATE

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.restype = ctypes.c_int


class LandlockError(OSError):
    """Landlock is missing here, or a rule could not be made."""


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is missing or disabled."""
    try:
        version = _libc.syscall(
            SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(CREATE_RULESET_VERSION)
        )
    except (OSError, AttributeError):
        return 0
    return int(version) if version > 0 else 0


def handled_fs(abi: int) -> int:
    """The file-system rights a ruleset handles on ``abi`` (all it knows but IOCTL_DEV)."""
    rights = ABI1_FS
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    return rights


def scopes(abi: int) -> int:
    return SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET if abi >= 6 else 0


def ruleset(
    writable_dirs: Iterable[str | os.PathLike[str]],
    devices: Iterable[str | os.PathLike[str]] = (),
    abi: int | None = None,
    scoped: bool = True,
) -> int:
    """A ruleset fd (close-on-exec; inherited through fork): read and execute anywhere,
    write only beneath ``writable_dirs`` and to ``devices``, and on ABI >= 6 no signal or
    abstract unix socket beyond the domain (unless ``scoped`` is False). Paths that do not
    exist are skipped. Raises LandlockError."""
    abi = abi_version() if abi is None else abi
    if abi < 1:
        raise LandlockError("Landlock is not supported by this kernel (or is disabled)")
    handled = handled_fs(abi)
    scope = scopes(abi) if scoped else 0
    if abi >= 6:
        attr = struct.pack("=QQQ", handled, 0, scope)
    elif abi >= 4:
        attr = struct.pack("=QQ", handled, 0)
    else:
        attr = struct.pack("=Q", handled)
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = int(_libc.syscall(SYS_CREATE_RULESET, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)))
    if fd < 0:
        raise _error("landlock_create_ruleset")
    try:
        allow(fd, "/", READ & handled)
        for path in writable_dirs:
            allow(fd, path, WRITE_DIR & handled)
        for path in devices:
            allow(fd, path, DEVICE & handled)
    except BaseException:
        os.close(fd)
        raise
    return fd


def allow(fd: int, path: str | os.PathLike[str], access: int) -> None:
    """Add "``access`` beneath ``path``" to ruleset ``fd`` (a missing path is skipped)."""
    try:
        target = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise LandlockError(exc.errno, f"landlock: cannot open {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISDIR(os.fstat(target).st_mode):
            access &= FILE_RIGHTS
        attr = ctypes.create_string_buffer(struct.pack("=Qi", access, target), 12)
        if _libc.syscall(SYS_ADD_RULE, fd, RULE_PATH_BENEATH, attr, ctypes.c_uint32(0)) != 0:
            raise _error(f"landlock_add_rule({path})")
    finally:
        os.close(target)


def restrict_self(fd: int) -> None:
    """Enforce ruleset ``fd`` on this process (and what it execs or forks from now on).

    Meant for the child between fork and exec: two system calls, no allocation."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise _error("prctl(PR_SET_NO_NEW_PRIVS)")
    if _libc.syscall(SYS_RESTRICT_SELF, fd, ctypes.c_uint32(0)) != 0:
        raise _error("landlock_restrict_self")


def close(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        try:  # noqa: SIM105 - contextlib is one import too many for the supervisor
            os.close(fd)
        except OSError:
            pass


def _error(what: str) -> LandlockError:
    errno = ctypes.get_errno()
    return LandlockError(errno, f"{what}: {os.strerror(errno)}")
