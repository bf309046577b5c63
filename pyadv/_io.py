"""Atomic file writes: a file either has its old content or its complete new content,
never a torn one, whatever interrupts the writer."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

#: the suffix of atomic_write's temporary files (".<name>.<random>.tmp", beside the target)
TMP_SUFFIX = ".tmp"


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Calls ``write(tmp_path)`` on a temporary file beside ``path``, flushes it to the disk
    (fsync), then renames it over ``path`` (a rename within one directory is atomic on POSIX)
    and flushes the directory entry. Without the first fsync a crash of the machine (not just
    of the process) could leave the new name on a file whose data never reached the disk."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    os.close(fd)
    try:
        # mkstemp's file is the owner's alone (0600): given the mode a plain open() would give, so
        # that a dataset is readable by whoever may read the folder it is in
        os.chmod(tmp, 0o666 & ~_umask())
        write(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync(path.parent, directory=True)
    return path


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (os.umask sets one to
    read it, which a thread creating a file at that moment would see)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """The temporary files that writes interrupted by a kill left in ``folder`` (not its
    sub-folders)."""
    folder = Path(folder)
    return sorted(folder.glob(f".*{TMP_SUFFIX}")) if folder.is_dir() else []


def _fsync(path, directory: bool = False) -> None:
    try:
        # a file opened for writing: Windows' fsync needs write access
        fd = os.open(path, (os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)) if directory else os.O_RDWR)
    except OSError:
        if directory:  # a platform that cannot open directories (Windows): the rename stands
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some file systems refuse fsync on a directory; a file's must succeed
            raise
    finally:
        os.close(fd)


def write_json_atomic(path: str | os.PathLike, obj) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.write("\n")

    return atomic_write(path, write)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)

    return atomic_write(path, write)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)
