import os
import shutil
import urllib.error
from dataclasses import replace
from pathlib import Path

import pytest
from conftest import dataset_path

from scaling import datasets
from scaling.errors import MoescaleError
from scaling.tables import read_table


def test_registry_lists_the_four_datasets():
    assert datasets.names() == ["chinchilla_epoch", "clark_routing", "gadre_overtraining", "optimal_sparsity_models"]
    with pytest.raises(MoescaleError, match="unknown dataset 'nope': known datasets are chinchilla_epoch"):
        datasets.path("nope")


def test_checksums_match_the_shared_sha256sums():
    sums = dataset_path("SHA256SUMS").read_text().split("\n")
    expected = dict(reversed(line.split()) for line in sums if line.strip())
    for ds in datasets.REGISTRY.values():
        assert ds.sha256 == expected[ds.filename]
        assert datasets.sha256_of(dataset_path(ds.filename)) == expected[ds.filename]


def test_chinchilla_shape():
    dataset_path("chinchilla_epoch.csv")
    df = read_table("chinchilla_epoch")
    assert df.shape == (245, 7)
    assert list(df.columns) == ["x", "y", "color", "Model Size", "Training FLOP", "hex_color", "loss"]


def test_clark_shape():
    dataset_path("clark_routing_curves.csv.gz")
    df = read_table("clark_routing")
    assert df.shape == (5799, 22)
    assert df["hyper_id"].nunique() == 223


def test_path_prefers_moescale_data():
    file = dataset_path("chinchilla_epoch.csv")
    assert datasets.path("chinchilla_epoch") == file


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No MOESCALE_DATA, an empty cache, and a fetch that records what it was asked."""
    source = dataset_path("chinchilla_epoch.csv")
    monkeypatch.delenv("MOESCALE_DATA", raising=False)
    monkeypatch.setenv("MOESCALE_CACHE", str(tmp_path / "cache"))
    calls = []

    def fetch(url, dest):
        calls.append(url)
        shutil.copyfile(source, dest)

    monkeypatch.setattr(datasets, "_fetch", fetch)
    return calls


def test_download_goes_to_cache_verified_then_cache_is_used(offline, tmp_path):
    got = datasets.path("chinchilla_epoch")
    assert got == tmp_path / "cache" / "chinchilla_epoch.csv"
    assert offline == [datasets.REGISTRY["chinchilla_epoch"].url]
    assert read_table("chinchilla_epoch").shape == (245, 7)
    assert len(offline) == 1  # second lookup hit the cache
    assert sorted(os.listdir(tmp_path / "cache")) == ["chinchilla_epoch.csv"]


def test_bad_checksum_deletes_download(offline, tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "_fetch", lambda url, dest: Path(dest).write_text("tampered"))
    with pytest.raises(MoescaleError, match="has sha256 .* expected 193478df"):
        datasets.path("chinchilla_epoch")
    assert not (tmp_path / "cache").exists()  # the folder made for the download is removed again


def test_offline_error_says_how_to_get_it(offline, tmp_path, monkeypatch):
    def fail(url, dest):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(datasets, "_fetch", fail)
    with pytest.raises(MoescaleError) as err:
        datasets.path("clark_routing")
    message = str(err.value)
    assert "set MOESCALE_DATA" in message
    assert datasets.REGISTRY["clark_routing"].url in message
    assert str(tmp_path / "cache" / "clark_routing_curves.csv.gz") in message
    assert not (tmp_path / "cache").exists()  # the folder made for the download is removed again


def test_derived_dataset_without_copy_says_no_url(offline):
    with pytest.raises(MoescaleError, match="no single download URL.*MOESCALE_DATA"):
        datasets.path("gadre_overtraining")
    assert offline == []


def test_real_fetch_through_file_url(tmp_path, monkeypatch):
    source = dataset_path("clark_routing_curves.csv.gz")
    monkeypatch.delenv("MOESCALE_DATA", raising=False)
    monkeypatch.setenv("MOESCALE_CACHE", str(tmp_path / "cache"))
    entry = replace(datasets.REGISTRY["clark_routing"], url=source.resolve().as_uri())
    monkeypatch.setitem(datasets.REGISTRY, "clark_routing", entry)
    assert read_table("clark_routing").shape == (5799, 22)


def test_corrupt_copy_in_moescale_data_is_refused(tmp_path, monkeypatch):
    (tmp_path / "chinchilla_epoch.csv").write_text("x,y\n1,2\n")
    monkeypatch.setenv("MOESCALE_DATA", str(tmp_path))
    with pytest.raises(MoescaleError, match="does not match the registered"):
        datasets.path("chinchilla_epoch")


def test_local_copy_finds_moescale_data_then_the_cache_without_downloading(offline, tmp_path, monkeypatch):
    assert datasets.local_copy("chinchilla_epoch") is None and offline == []
    datasets.path("chinchilla_epoch")  # downloads into the cache
    assert datasets.local_copy("chinchilla_epoch") == tmp_path / "cache" / "chinchilla_epoch.csv"
    monkeypatch.setenv("MOESCALE_DATA", str(dataset_path("chinchilla_epoch.csv").parent))
    assert datasets.local_copy("chinchilla_epoch") == dataset_path("chinchilla_epoch.csv")
    with pytest.raises(MoescaleError, match="unknown dataset"):
        datasets.local_copy("nope")
