"""Files written so that a crash or a planted link never leaves a half-written or redirected file:
temporary files created exclusively, renamed into place, and directories opened without following links."""

from __future__ import annotations

import errno
import os
import secrets
import stat
from collections.abc import Iterable
from pathlib import Path

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _CLOEXEC


def link_refused(path: str | os.PathLike[str]) -> OSError:
    return OSError(errno.ELOOP, "refusing to follow a symbolic link", str(path))


def open_directory(root: str | os.PathLike[str], parts: Iterable[str], *, create: bool = False) -> int:
    """A descriptor of ``root``/``parts`` in which every part is a real directory, never a symbolic link
    (created when missing with ``create``). ``root`` itself is the caller's choice and may be a link."""
    path = Path(root)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, _DIRECTORY)
    try:
        for part in parts:
            if part in ("", ".", "..") or "/" in part:
                raise ValueError(f"{part!r} is not a directory name")
            path = path / part
            if create:
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                except FileExistsError:
                    pass
            try:
                inner = os.open(part, _DIRECTORY | _NOFOLLOW, dir_fd=fd)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                if stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
                    raise link_refused(path) from None
                raise NotADirectoryError(errno.ENOTDIR, "not a directory", str(path)) from None
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_atomically(
    target: Path, chunks: Iterable[bytes], *, root: str | os.PathLike[str] | None = None, mode: int = 0o666
) -> int:
    """Write chunks to a new temporary file beside ``target`` and rename it into place; on any error,
    remove the temporary file and leave ``target`` as it was.

    The temporary file is created exclusively (O_EXCL, O_NOFOLLOW) under an unpredictable name, so a
    planted file or link is never written through, and the rename replaces a link at ``target``, not
    the file it points to. The file gets ``mode`` less the umask, as ``open()`` gives. With ``root``,
    every directory from ``root`` down to ``target`` must be a real directory, not a symbolic link."""
    target = Path(target)
    if root is None:
        target.parent.mkdir(parents=True, exist_ok=True)
        dir_fd = os.open(target.parent, _DIRECTORY)
    else:
        dir_fd = open_directory(root, target.parent.relative_to(root).parts, create=True)
    try:
        tmp = f".{target.name}.{secrets.token_hex(8)}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, mode, dir_fd=dir_fd)
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    written += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            raise
        return written
    finally:
        os.close(dir_fd)
