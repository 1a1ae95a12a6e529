"""Key material the executors must put on disk (the etcd CA, client certificate and key; a
kubeconfig): where it lives and when it goes. Not pure (files, signals).

- One base directory per user, ``$TMPDIR/cpswap-<uid>`` (0700, owned by the user, never a symlink);
  each process writes into its own ``run-<pid>-<purpose>-*`` directory (0700) in it, files 0600
  created with O_EXCL and O_NOFOLLOW.
- The directory (and the base, once empty) is removed when the ``private_dir`` block ends, on
  SIGTERM (what CI cancellation sends) and SIGINT: the handlers remove every live directory of the process, then exit with
  128 + the signal number (SIGINT raises KeyboardInterrupt, as Python does).
- SIGKILL cannot be caught: the next cpswap process that writes key material first removes every
  ``run-<pid>-*`` directory whose process is gone.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import tempfile
import threading
from pathlib import Path
from collections.abc import Iterator

from cpswap.core.errors import PermanentError

_LIVE: set[Path] = set()
_HANDLED = (signal.SIGTERM, signal.SIGINT)
_installed: list[int] = []


def base_dir() -> Path:
    """``$TMPDIR/cpswap-<uid>``: created 0700; an existing one must be this user's real directory."""
    base = Path(tempfile.gettempdir()) / f"cpswap-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(base, 0o700)
    info = os.lstat(base)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise PermanentError(f"{base}: not a directory owned by uid {os.getuid()}; refusing to put key material "
                             f"there (remove it, or set TMPDIR to a private directory)")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(base, 0o700)
    return base


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(base: Path) -> list[str]:
    """Remove the directories of cpswap processes that are gone (killed with SIGKILL, or the host
    rebooted); returns their names."""
    removed = []
    for entry in sorted(base.iterdir()):
        parts = entry.name.split("-")
        if len(parts) < 2 or parts[0] != "run" or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid != os.getpid() and not _alive(pid):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def _on_signal(signum: int, frame: object) -> None:
    cleanup()
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise SystemExit(128 + signum)


def _install_handlers() -> None:
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    for signum in _HANDLED:
        if signal.getsignal(signum) in (signal.SIG_DFL, signal.default_int_handler):
            signal.signal(signum, _on_signal)
    _installed.append(os.getpid())


def cleanup() -> None:
    """Remove every private directory this process still holds (and the base, when empty)."""
    for path in list(_LIVE):
        shutil.rmtree(path, ignore_errors=True)
        _LIVE.discard(path)
        with contextlib.suppress(OSError):
            os.rmdir(path.parent)


@contextlib.contextmanager
def private_dir(purpose: str) -> Iterator[Path]:
    """A fresh 0700 directory for this process's key material, removed at the end of the block,
    on SIGTERM/SIGINT, or by the next run if this process is killed outright."""
    base = base_dir()
    remove_stale(base)
    _install_handlers()
    path = Path(tempfile.mkdtemp(prefix=f"run-{os.getpid()}-{purpose}-", dir=base))
    _LIVE.add(path)
    try:
        yield path
    finally:
        _LIVE.discard(path)
        shutil.rmtree(path, ignore_errors=True)
        with contextlib.suppress(OSError):
            os.rmdir(base)  # when no other run holds a directory in it


def write_secret(directory: Path, name: str, text: str) -> str:
    """Write ``text`` to a new 0600 file ``name`` in ``directory`` (never following or replacing)."""
    path = directory / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return str(path)
