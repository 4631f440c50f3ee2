"""Registry of public reference datasets: where each lives, its checksum, how to load it.

Lookup order for a dataset's file:

1. ``$MOESCALE_DATA/<filename>`` (a folder you manage, e.g. a shared read-only copy);
2. the user cache ``$MOESCALE_CACHE``, else ``$XDG_CACHE_HOME/moescale``, else
   ``~/.cache/moescale``;
3. a download from the public source URL into the cache, verified against its sha256.

Every copy found is checked against the registered sha256, so a fit never runs on a
silently different file.

Example::

    >>> from scaling import datasets
    >>> datasets.names()
    ['chinchilla_epoch', 'clark_routing', 'gadre_overtraining', 'optimal_sparsity_models']
    >>> datasets.path("chinchilla_epoch")        # a verified local copy
    >>> scaling.read_table("chinchilla_epoch")    # as a DataFrame, 245 rows x 7 columns

This module is the bottom of the readers: it finds and verifies files and reads no
table (``scaling.tables`` does, and imports this module, never the other way).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from scaling.errors import MoescaleError
from scaling.files import atomic_path


@dataclass(frozen=True)
class Dataset:
    """One registered dataset: its file name, public source and checksum."""

    name: str
    filename: str
    url: str | None  # None: derived table with no single raw file upstream
    sha256: str
    description: str
    citation: str
    source: str  # where the data comes from, for humans


REGISTRY: dict[str, Dataset] = {
    d.name: d
    for d in (
        Dataset(
            name="chinchilla_epoch",
            filename="chinchilla_epoch.csv",
            url="https://raw.githubusercontent.com/epoch-research/analyzing-chinchilla/main/data/svg_extracted_data.csv",
            sha256="193478df4e90f040016431996c45682659306840ecdadf83cfb9cd5ca0aa1b30",
            description="Epoch AI's extraction of the Chinchilla (Hoffmann et al. 2022) loss data: "
            "245 runs with Model Size, Training FLOP and loss.",
            citation="Besiroglu et al. 2024, 'Chinchilla Scaling: A replication attempt', arXiv 2404.10102",
            source="github.com/epoch-research/analyzing-chinchilla data/svg_extracted_data.csv",
        ),
        Dataset(
            name="clark_routing",
            filename="clark_routing_curves.csv.gz",
            url="https://raw.githubusercontent.com/google-deepmind/scaling_laws_for_routing/main/data/curves.csv.gz",
            sha256="c03e7531add85e594f368d33bac4a0220280be858a7ed12d147cf73af6a3819f",
            description="DeepMind's loss curves of routed language models: 5,799 rows, 223 runs "
            "(hyper_id), Dense/S-Base/RL-R/Hash routers.",
            citation="Clark et al. 2022, 'Unified Scaling Laws for Routed Language Models', arXiv 2202.01169",
            source="github.com/google-deepmind/scaling_laws_for_routing data/curves.csv.gz "
            "(Apache 2.0 / CC-BY 4.0)",
        ),
        Dataset(
            name="gadre_overtraining",
            filename="gadre_overtraining.csv",
            url=None,
            sha256="8e5f22398b9ecf7e5359b31f9fe7319424f2ba259fd81b75521e49514a2000f4",
            description="Tidy table of Gadre et al.'s 104 over-trained models: N, D, tokens per "
            "parameter, C4 and Paloma losses, average top-1 error.",
            citation="Gadre et al. 2024, 'Language models scale reliably with over-training and on "
            "downstream tasks', arXiv 2403.08540",
            source="derived from github.com/mlfoundations/scaling exp_data/models and exp_data/evals",
        ),
        Dataset(
            name="optimal_sparsity_models",
            filename="optimal_sparsity_models.csv",
            url=None,
            sha256="d7af7a832f58a2a255b2f1b262a79fddf5d7b5c33855034bf546571bc39a9743",
            description="Architectures of 46 released Mixtral-style MoE models with the rounded "
            "total/active parameter counts in their names.",
            citation="Nakamura et al. 2025, arXiv 2508.18672",
            source="derived from the llm-jp/optimal-sparsity-math-* model names and configs",
        ),
    )
}


def names() -> list[str]:
    """Names of the registered datasets, sorted."""
    return sorted(REGISTRY)


def info(name: str) -> Dataset:
    """The registry entry for ``name``; MoescaleError naming the known ones otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise MoescaleError(f"unknown dataset {name!r}: known datasets are {', '.join(names())}") from None


def cache_dir() -> Path:
    """The user cache folder: $MOESCALE_CACHE, else $XDG_CACHE_HOME/moescale, else ~/.cache/moescale."""
    if os.environ.get("MOESCALE_CACHE"):
        return Path(os.environ["MOESCALE_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "moescale"
    return Path.home() / ".cache" / "moescale"


def sha256_of(file: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(file, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _verify(ds: Dataset, file: Path) -> None:
    got = sha256_of(file)
    if got != ds.sha256:
        raise MoescaleError(
            f"{file}: sha256 {got} does not match the registered {ds.sha256} for dataset {ds.name!r}; "
            "replace or delete this file"
        )


def _fetch(url: str, dest: Path) -> None:
    """Copy the bytes at ``url`` into ``dest`` (tests monkeypatch this to stay offline)."""
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        while block := response.read(1 << 20):
            out.write(block)


def download(name: str) -> Path:
    """Download dataset ``name`` into the cache, verify its sha256 and return the cached path.

    The bytes go to a temporary file in the cache folder that is renamed into place only
    after the checksum matches; a mismatch deletes it and raises MoescaleError.
    """
    ds = info(name)
    target = cache_dir() / ds.filename
    if ds.url is None:
        raise MoescaleError(_not_found_message(ds))
    # folders this call creates are removed again when the download fails: nothing half-done
    created = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    ok = False
    try:
        with atomic_path(target) as tmp:  # renamed into place only when the checksum matches
            try:
                _fetch(ds.url, tmp)
            except OSError as exc:  # URLError is an OSError
                raise MoescaleError(f"{_not_found_message(ds)} (download failed: {exc})") from None
            got = sha256_of(tmp)
            if got != ds.sha256:
                raise MoescaleError(
                    f"download of {ds.url} has sha256 {got}, expected {ds.sha256}; "
                    f"nothing was written to {target}"
                )
        ok = True
    finally:
        if not ok:
            for folder in created:  # innermost first
                with contextlib.suppress(OSError):
                    folder.rmdir()
    return target


def _not_found_message(ds: Dataset) -> str:
    where = f"$MOESCALE_DATA/{ds.filename}"
    cached = cache_dir() / ds.filename
    if ds.url is None:
        return (
            f"dataset {ds.name!r} not found: it is a table derived from {ds.source} with no single "
            f"download URL; put {ds.filename} in a folder named by MOESCALE_DATA or at {cached}"
        )
    return (
        f"dataset {ds.name!r} not found at {where} or {cached} and could not be downloaded: "
        f"set MOESCALE_DATA to a folder holding {ds.filename}, or download {ds.url} to {cached}"
    )


def local_copy(name: str) -> Path | None:
    """Where :func:`path` finds dataset ``name`` without downloading: ``$MOESCALE_DATA/<filename>``,
    else the cached copy, else None. The copy is not verified here (``path`` does that)."""
    ds = info(name)
    data_dir = os.environ.get("MOESCALE_DATA")
    if data_dir and (Path(data_dir).expanduser() / ds.filename).is_file():
        return Path(data_dir).expanduser() / ds.filename
    if (cache_dir() / ds.filename).is_file():
        return cache_dir() / ds.filename
    return None


def path(name: str, download_missing: bool = True) -> Path:
    """Local path of dataset ``name``, downloading it into the cache when no copy exists.

    Lookup: $MOESCALE_DATA, then the user cache (see :func:`cache_dir`), then the public URL.
    Every copy is checked against the registered sha256.

    >>> path("chinchilla_epoch").name
    'chinchilla_epoch.csv'
    """
    ds = info(name)
    data_dir = os.environ.get("MOESCALE_DATA")
    if data_dir:
        candidate = Path(data_dir).expanduser() / ds.filename
        if candidate.is_file():
            _verify(ds, candidate)
            return candidate
    cached = cache_dir() / ds.filename
    if cached.is_file():
        if sha256_of(cached) == ds.sha256:
            return cached
        if ds.url is None or not download_missing:
            _verify(ds, cached)  # raises with the mismatch
    if not download_missing or ds.url is None:
        raise MoescaleError(_not_found_message(ds))
    return download(name)

