"""Atomic writes: readers see the old file or the new one, with the mode a plain open() gives."""

from __future__ import annotations

import os
import stat

import pytest

from nas._io import atomic_path, atomic_write_text


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_new_files_get_the_umask_mode_not_mkstemps_private_one(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        os.umask(0o027)
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.txt") == 0o644
    assert _mode(tmp_path / "b.txt") == 0o640


def test_a_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "run.sh"
    target.write_text("old")
    target.chmod(0o755)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o755


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "keep.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_a_key_given_twice_in_a_json_object_is_refused_at_its_second_line(tmp_path):
    from nas import NasConfigError
    from nas._io import read_json_object

    path = tmp_path / "t.json"
    path.write_text('{\n  "device": "a",\n  "units": {"latency": "ms"},\n  "device": "b"\n}\n')
    with pytest.raises(NasConfigError, match=r"t\.json:4: key 'device' appears twice"):
        read_json_object(path)
