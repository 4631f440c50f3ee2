"""scaling.files: atomic writes leave the target whole or untouched, with the umask's mode."""

import os
import stat

import pytest

from scaling.errors import first_line
from scaling.files import atomic_path, atomic_write


def test_atomic_write_replaces_the_target_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")
    atomic_write(target, "new")
    assert target.read_text() == "new"
    atomic_write(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp_file(tmp_path):
    target = tmp_path / "fig.pdf"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.suffix == ".pdf" and tmp.name.startswith(".fig.pdf.")
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.pdf"]


def test_new_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "a", "x")
        os.umask(0o077)
        atomic_write(tmp_path / "b", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o600


def test_first_line_takes_the_first_line_or_the_type_name():
    assert first_line(ValueError("bad value\nmore detail")) == "bad value"
    assert first_line(ValueError("")) == "ValueError"
    assert first_line(KeyError("k"), with_type=True) == "KeyError: 'k'"
    assert first_line(RuntimeError(""), with_type=True) == "RuntimeError"


def test_remove_stale_temps_removes_only_atomic_temp_files(tmp_path):
    from scaling.files import remove_stale_temps

    (tmp_path / ".fig.pdf.ab12cd.tmp.pdf").write_text("half")
    (tmp_path / ".run.json.x1.tmp").write_text("half")
    (tmp_path / "fig.pdf").write_text("whole")
    (tmp_path / ".hidden").write_text("keep")
    removed = remove_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == [".fig.pdf.ab12cd.tmp.pdf", ".run.json.x1.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "fig.pdf"]


def test_atomic_dir_appears_whole_or_not_at_all(tmp_path):
    from scaling.files import atomic_dir

    target = tmp_path / "ckpt"
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "half.bin").write_bytes(b"x")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    target.mkdir()  # an empty folder may be replaced
    with atomic_dir(target) as tmp:
        (tmp / "model.safetensors").write_bytes(b"w")
    assert sorted(p.name for p in target.iterdir()) == ["model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]
