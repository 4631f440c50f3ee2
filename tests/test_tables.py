import numpy as np
import pandas as pd
import pytest
from conftest import dataset_path

from scaling.errors import MoescaleError
from scaling.store import Store
from scaling.tables import check_numeric, read_table


@pytest.fixture
def frame():
    return pd.DataFrame({"n": [1, 2, 3], "loss": [3.25, 2.5, 2.125], "label": ["a", "b", "c"]})


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".parquet", ".json", ".jsonl"])
def test_formats_round_trip_against_pandas(tmp_path, frame, suffix):
    file = tmp_path / f"t{suffix}"
    if suffix.startswith(".csv"):
        frame.to_csv(file, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(file, index=False)
    else:
        frame.to_json(file, orient="records", lines=suffix == ".jsonl")
    got = read_table(file)
    assert list(got.columns) == ["n", "loss", "label"]
    np.testing.assert_array_equal(got["n"].to_numpy(), [1, 2, 3])
    np.testing.assert_array_equal(got["loss"].to_numpy(), [3.25, 2.5, 2.125])
    assert got["label"].tolist() == ["a", "b", "c"]
    assert read_table(str(file)).shape == (3, 3)


def test_dataframe_passes_through_as_a_copy(frame):
    got = read_table(frame)
    got.loc[0, "n"] = 99
    assert frame.loc[0, "n"] == 1


def test_dataset_name_reads_the_registry():
    reference = pd.read_csv(dataset_path("chinchilla_epoch.csv"))
    got = read_table("chinchilla_epoch")
    assert got.shape == (245, 7)
    np.testing.assert_array_equal(got["loss"].to_numpy(), reference["loss"].to_numpy())


def test_store_table_by_name(frame):
    with Store(":memory:") as store:
        store.import_table(frame, "points")
        assert read_table("points", store=store)["loss"].tolist() == [3.25, 2.5, 2.125]
        assert read_table("final", store=store).empty


def test_missing_file(tmp_path):
    with pytest.raises(MoescaleError, match=r"nope\.csv: file not found"):
        read_table(tmp_path / "nope.csv")


def test_unknown_format_names_suffix_and_accepted(tmp_path):
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(MoescaleError, match=r"unknown table format '\.xlsx'; accepted: \.csv, \.csv\.gz, \.parquet"):
        read_table(tmp_path / "t.xlsx")


def test_unknown_name_says_what_was_tried():
    with pytest.raises(MoescaleError, match="neither a file.*chinchilla_epoch"):
        read_table("no_such_thing")


def test_malformed_file_is_a_moescale_error(tmp_path):
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(MoescaleError, match=r"bad\.parquet: cannot read as \.parquet"):
        read_table(tmp_path / "bad.parquet")


def test_check_numeric_names_row_and_column():
    df = pd.DataFrame({"a": [1.0, 2.0], "b": ["1", "x"], "c": [1.0, np.inf]})
    check_numeric(df, ["a"], "t.csv")
    with pytest.raises(MoescaleError, match=r"t\.csv: missing column 'z'"):
        check_numeric(df, ["z"], "t.csv")
    with pytest.raises(MoescaleError, match=r"t\.csv: row 2, column 'b': value 'x' is not a number"):
        check_numeric(df, ["b"], "t.csv")
    with pytest.raises(MoescaleError, match=r"t\.csv: row 2, column 'c': value inf is not a finite number"):
        check_numeric(df, ["c"], "t.csv")
