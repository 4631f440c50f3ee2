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


# ----------------------------------------------------------------------------- strict imports (issue 8, point 2)

import gzip  # noqa: E402
import os  # noqa: E402

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("lost_header.csv", "a,b\n1,2\n3\n4,5,6\n", r"lost_header\.csv:3: 1 fields, but the header on line 1 has 2"),
        ("long_row.csv", "a,b,c\n" + "1,2,3\n" * 50 + "1,2,3,4\n" + "1,2,3\n" * 49, r"long_row\.csv:52: 4 fields"),
        ("short_row.csv", "a,b,c\n" + "1,2,3\n" * 50 + "1,2\n" + "1,2,3\n" * 49, r"short_row\.csv:52: 2 fields"),
        ("quote.csv", 'a,b\n1,2\n3,"x\n', r"quote\.csv:\d+: malformed CSV"),
        ("empty.csv", "", r"empty\.csv: empty file"),
        ("dup.csv", "a,a\n1,2\n", r"dup\.csv:1: duplicate column name 'a'"),
        ("noname.csv", "a,\n1,2\n", r"noname\.csv:1: column 2 has an empty name"),
        ("blank1.csv", "a\n1\n\n2\n", r"blank1\.csv:3: blank line in a one-column table"),
        ("padded.csv", "a,b\n1,2\n3, 2.5\n", r"padded\.csv:3: column 'b': number ' 2.5' is padded with spaces"),
        ("trunc.json", '[{"a": 1}, {"a": 2}, {"a', r"trunc\.json:1: malformed JSON"),
        ("empty.json", "", r"empty\.json: empty file"),
        ("empty_array.json", "[]", r"empty_array\.json: no records"),
        ("object.json", '{"a": [1, 2]}', r"object\.json:1: expected a JSON array of objects"),
        ("dupkey.jsonl", '{"a": 1}\n{"a": 2, "a": 3}\n', r"dupkey\.jsonl:2: duplicate key 'a'"),
        ("trunc.jsonl", '{"a": 1}\n{"a": 2\n{"a": 3}\n', r"trunc\.jsonl:2: malformed JSON line"),
        ("scalar.jsonl", '{"a": 1}\n7\n', r"scalar\.jsonl:2: expected a JSON object"),
        ("empty.parquet", "", r"empty\.parquet: empty file"),
    ],
)
def test_strict_import_refuses_with_file_and_line(tmp_path, name, text, message):
    file = tmp_path / name
    file.write_text(text)
    with pytest.raises(MoescaleError, match=message) as exc:
        read_table(file)
    assert "\n" not in str(exc.value)
    with Store(tmp_path / "s.duckdb") as store:
        before = store.tables()
        with pytest.raises(MoescaleError, match=message):
            store.import_table(file, "t")
        assert store.tables() == before


def test_strict_import_gzip_and_quoted_fields_are_read_exactly(tmp_path):
    text = 'n,label\n1,"x,y"\n2,"say ""hi"""\n3,\n'
    (tmp_path / "t.csv.gz").write_bytes(gzip.compress(text.encode()))
    got = read_table(tmp_path / "t.csv.gz")
    assert got["n"].tolist() == [1, 2, 3]
    assert got["label"].tolist()[:2] == ["x,y", 'say "hi"'] and pd.isna(got["label"].iloc[2])
    (tmp_path / "bad.csv.gz").write_bytes(gzip.compress(b"a,b\n1\n"))
    with pytest.raises(MoescaleError, match=r"bad\.csv\.gz:2: 1 fields"):
        read_table(tmp_path / "bad.csv.gz")


def test_store_import_reads_exactly_what_read_table_reads(tmp_path):
    (tmp_path / "t.csv").write_text("a,b\n1,x\n2,\n")
    with Store(tmp_path / "s.duckdb") as store:
        assert store.import_table(tmp_path / "t.csv", "t") == 2
        pd.testing.assert_frame_equal(store.table("t"), read_table(tmp_path / "t.csv"))


def test_read_table_takes_a_store_object_not_a_path(tmp_path):
    with pytest.raises(MoescaleError, match=r"store= takes an open scaling\.Store"):
        read_table("final", store=str(tmp_path / "s.duckdb"))
    assert not (tmp_path / "s.duckdb").exists()


# A valid CSV and its random corruptions: the strict reader either refuses, or reads exactly
# the table pandas' C parser reads in its strictest mode (an independent implementation).
VALID = "n,loss,label\n1,3.25,xa\n2,2.5,yb\n3,2.125,\"z,c\"\n4,2.0,xd\n"
EDITS = st.lists(
    st.tuples(st.sampled_from(["insert", "delete", "replace"]), st.integers(0, len(VALID) + 20),
              st.sampled_from([",", '"', "\n", "1", "7", ".", "x", " ", "\r\n", ""])),
    min_size=1, max_size=4,
)


def _corrupt(text: str, edits) -> str:
    for op, pos, char in edits:
        pos = pos % (len(text) + 1)
        if op == "insert":
            text = text[:pos] + char + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[pos + 1 :]
        else:
            text = text[:pos] + char + text[pos + 1 :]
    return text


def _cells(df: pd.DataFrame) -> list[list]:
    """Cell values, compared by value: numbers as floats, strings as strings, missing as None."""
    out = []
    for column in df.columns:
        values = []
        for v in df[column].tolist():
            if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
                values.append(None)
            elif isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool):
                values.append(float(v))
            else:
                values.append(str(v))
        out.append(values)
    return out


@settings(max_examples=int(os.environ.get("MOESCALE_FUZZ_EXAMPLES", 150)), deadline=None, derandomize=True,
          database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=EDITS)
def test_corrupted_csv_is_refused_or_read_as_the_reference_reads_it(tmp_path, edits):
    text = _corrupt(VALID, edits)
    file = tmp_path / "c.csv"
    file.write_bytes(text.encode())
    try:
        got = read_table(file)
    except MoescaleError as exc:
        assert "\n" not in str(exc) and str(file) in str(exc)
        return
    reference = pd.read_csv(file, engine="c", on_bad_lines="error", keep_default_na=False, na_values=[""],
                            skip_blank_lines=True)
    assert list(got.columns) == list(reference.columns)
    assert _cells(got) == _cells(reference)
