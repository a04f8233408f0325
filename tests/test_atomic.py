import os
import stat

import pytest

from ttcrouter.atomic import atomic_path, remove_temporaries, write_atomic


def test_write_atomic_replaces_whole_file_readable_by_others(tmp_path):
    path = tmp_path / "f.json"
    write_atomic(path, b"old")
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask   # not mkstemp's 0600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.json"]


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "f.parquet"
    write_atomic(path, b"old")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.parquet"]


def test_remove_temporaries_only_touches_leftovers(tmp_path):
    (tmp_path / ".tmp-part-1.parquet.abc").write_bytes(b"half")
    (tmp_path / "part-1.parquet").write_bytes(b"whole")
    removed = remove_temporaries(tmp_path)
    assert [p.name for p in removed] == [".tmp-part-1.parquet.abc"]
    assert [p.name for p in tmp_path.iterdir()] == ["part-1.parquet"]
