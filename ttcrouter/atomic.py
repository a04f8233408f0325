"""Atomic file writes: a file appears whole under its name, or not at all.

The one atomic writer of ttcrouter. The runs files (:func:`ttcrouter.runs.write_runs`) and
every file of a collection directory (:mod:`ttcrouter.collection.store`) are written through
it, so a process killed at any moment (SIGKILL included) leaves either the old file or the
new one, never half of one. It sits below both so that the runs-table contract need not
import the collection.

The data go to a hidden temporary file in the target's directory (``.tmp-<name>.<random>``;
a rename is atomic only within one file system), which is flushed, ``fsync``-ed, given the
permissions of an ordinary new file and renamed into place; the directory is then
``fsync``-ed so that the rename itself survives a power cut. A leftover temporary file (from
a writer that was killed) never has the target's name, and can be removed with
:func:`remove_temporaries`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

__all__ = ["TMP_PREFIX", "atomic_path", "write_atomic", "remove_temporaries"]

#: Prefix of the temporary files; a glob on it finds what a killed writer left.
TMP_PREFIX = ".tmp-"


def _fsync_dir(path: Path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory descriptors
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _default_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path):
    """Give a temporary path to write; on success, move it to ``path`` atomically.

    Parameters
    ----------
    path : str or Path
        The target; its directory must exist.

    Yields
    ------
    Path
        A temporary file beside ``path``: write it by name (``pq.write_table(table, tmp)``).
        When the block raises, it is removed and ``path`` is left untouched.

    Examples
    --------
    >>> with atomic_path("runs.parquet") as tmp:  # doctest: +SKIP
    ...     df.to_parquet(tmp)
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        _fsync_file(tmp)
        # mkstemp makes 0600; a shipped table must be readable by others
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_path`); returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def remove_temporaries(directory) -> list[Path]:
    """Remove the temporary files killed writers left in ``directory``; returns them.

    Call it only while no other writer can be writing there (under the directory's lock).
    """
    removed = []
    for p in Path(directory).glob(f"{TMP_PREFIX}*"):
        try:
            p.unlink()
            removed.append(p)
        except OSError:  # pragma: no cover - gone already, or not ours to remove
            pass
    return removed
