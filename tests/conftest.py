import os
from pathlib import Path

import pytest

# Reference datasets for tests: $MOESCALE_DATA, else the shared folder beside the checkout.
_DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
if "MOESCALE_DATA" not in os.environ and _DEFAULT_DATA.is_dir():
    os.environ["MOESCALE_DATA"] = str(_DEFAULT_DATA)


def dataset_path(filename: str) -> Path:
    """Path of a reference dataset file, or skip the test saying how to provide it."""
    root = os.environ.get("MOESCALE_DATA")
    if not root or not (Path(root) / filename).is_file():
        pytest.skip(f"reference dataset {filename} not found: set MOESCALE_DATA to its folder")
    return Path(root) / filename
