"""scaling/public_fits.py: the laws fitted to the public reference datasets (figures in tests/test_figures.py,
the published values in tests/test_published_fits.py)."""

import pytest

from scaling import public_fits
from scaling.errors import MoescaleError


def test_public_figures_skip_without_data(tmp_path, monkeypatch):
    monkeypatch.setenv("MOESCALE_DATA", str(tmp_path / "nothing"))
    monkeypatch.setenv("MOESCALE_CACHE", str(tmp_path / "cache"))
    with pytest.raises(MoescaleError, match="chinchilla_epoch"):
        public_fits.dataset_file("chinchilla_epoch")
    with pytest.raises(MoescaleError, match="clark_routing"):
        public_fits.clark_fits()
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.csv*")), "downloaded"
