import os
import stat

import pytest

from competition.fileio import atomic_dir, atomic_path, write_json


def test_atomic_path_writes_whole_files_with_the_usual_permissions(tmp_path):
    target = write_json(tmp_path / "a" / "m.json", {"x": 1})
    assert target.read_text().strip().startswith("{")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in target.parent.iterdir()] == ["m.json"]


def test_a_failed_write_leaves_neither_the_target_nor_a_temporary(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out.csv") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RuntimeError):
        with atomic_dir(tmp_path / "folder") as tmp:
            (tmp / "f").write_text("x")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
