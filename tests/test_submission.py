import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from catsdogs.submission import (
    SubmissionError,
    check_submission,
    parse_test_id,
    read_sample_ids,
    read_submission,
    write_submission,
)

CLI = Path(__file__).resolve().parents[1] / "src" / "check_submission.py"


def write_csv(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def sample_csv(folder: Path, ids: list[int]) -> Path:
    rows = "".join(f"{test_id},0.5\n" for test_id in ids)
    return write_csv(folder, "sample_submission.csv", "id,label\n" + rows)


def check_error(path: Path, **kwargs) -> SubmissionError:
    with pytest.raises(SubmissionError) as info:
        check_submission(path, **kwargs)
    return info.value


# parse_test_id


@pytest.mark.parametrize(
    "name, expected",
    [("1.jpg", 1), ("0010.JPG", 10), ("12500.jpg", 12500), ("data/test/7.png", 7), ("0.jpg", 0)],
)
def test_parse_test_id_valid(name, expected):
    assert parse_test_id(name) == expected


@pytest.mark.parametrize("name", ["cat.1.jpg", "abc.jpg", "-1.jpg", "1_0.jpg", " 1.jpg", ".jpg"])
def test_parse_test_id_rejects(name):
    with pytest.raises(ValueError, match="Invalid test photo name"):
        parse_test_id(name)


def test_parse_test_id_names_file():
    with pytest.raises(ValueError, match="cat.1.jpg"):
        parse_test_id("cat.1.jpg")


# check_submission: valid files


def test_valid_file_returns_count(tmp_path):
    path = write_csv(tmp_path, "sub.csv", "id,label\n1,0.9\n2,0.1\n3,0.5\n")
    assert check_submission(path) == 3


def test_valid_file_matches_sample(tmp_path):
    sample = sample_csv(tmp_path, [1, 2, 3])
    path = write_csv(tmp_path, "sub.csv", "id,label\n1,0.9\n2,0.1\n3,0.5\n")
    assert check_submission(path, sample_path=sample) == 3


def test_numeric_order_accepted(tmp_path):
    path = write_csv(tmp_path, "sub.csv", "id,label\n1,0.1\n2,0.2\n10,0.3\n11,0.4\n100,0.5\n")
    assert check_submission(path) == 5


def test_read_submission_returns_values(tmp_path):
    path = write_csv(tmp_path, "sub.csv", "id,label\n3,0.25\n7,1e-07\n")
    ids, labels = read_submission(path)
    assert ids == [3, 7]
    assert labels == [0.25, 1e-07]


def test_byte_order_mark_accepted(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_bytes(b"\xef\xbb\xbfid,label\n1,0.5\n")
    assert check_submission(path) == 1


def test_crlf_line_endings_accepted(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_bytes(b"id,label\r\n1,0.5\r\n2,0.5\r\n")
    assert check_submission(path) == 2


# check_submission: header


def test_header_id_prob_rejected(tmp_path):
    error = check_error(write_csv(tmp_path, "sub.csv", "ID,prob\n1,0.5\n"))
    assert error.line == 1
    assert "'ID,prob'" in str(error)
    assert "sub.csv" in str(error)


def test_index_column_rejected(tmp_path):
    error = check_error(write_csv(tmp_path, "sub.csv", ",id,label\n0,1,0.5\n"))
    assert error.line == 1
    assert "index=False" in str(error)


def test_unnamed_index_column_rejected(tmp_path):
    error = check_error(write_csv(tmp_path, "sub.csv", "Unnamed: 0,id,label\n0,1,0.5\n"))
    assert "index=False" in str(error)


def test_empty_file_rejected(tmp_path):
    error = check_error(write_csv(tmp_path, "sub.csv", ""))
    assert "empty file" in str(error)


def test_header_only_rejected(tmp_path):
    error = check_error(write_csv(tmp_path, "sub.csv", "id,label\n"))
    assert "no data rows" in str(error)


# check_submission: rows


def test_missing_row_vs_sample(tmp_path):
    sample = sample_csv(tmp_path, [1, 2, 3, 4])
    path = write_csv(tmp_path, "sub.csv", "id,label\n1,0.5\n2,0.5\n4,0.5\n")
    error = check_error(path, sample_path=sample)
    assert "first is id 3" in str(error)
    assert "1 ids" in str(error)
    assert "sub.csv" in str(error)


def test_extra_row_vs_sample(tmp_path):
    sample = sample_csv(tmp_path, [1, 2])
    path = write_csv(tmp_path, "sub.csv", "id,label\n1,0.5\n2,0.5\n3,0.5\n")
    error = check_error(path, sample_path=sample)
    assert error.line == 4
    assert "id 3 is not in the sample" in str(error)


def test_missing_row_vs_expected_ids(tmp_path):
    path = write_csv(tmp_path, "sub.csv", "id,label\n1,0.5\n3,0.5\n")
    error = check_error(path, expected_ids=np.arange(1, 4))
    assert "first is id 2" in str(error)


def test_sample_and_expected_ids_conflict(tmp_path):
    sample = sample_csv(tmp_path, [1])
    path = write_csv(tmp_path, "sub.csv", "id,label\n1,0.5\n")
    with pytest.raises(ValueError, match="not both"):
        check_submission(path, sample_path=sample, expected_ids=[1])


def test_duplicate_id_rejected(tmp_path):
    path = write_csv(tmp_path, "sub.csv", "id,label\n1,0.5\n2,0.5\n2,0.6\n3,0.5\n")
    error = check_error(path)
    assert error.line == 4
    assert "duplicate id 2" in str(error)
    assert "line 3" in str(error)


def test_label_one_rejected(tmp_path):
    path = write_csv(tmp_path, "sub.csv", "id,label\n1,0.5\n2,1.0\n")
    error = check_error(path)
    assert error.line == 3
    assert "'1.0'" in str(error)
    assert "strictly inside (0, 1)" in str(error)


def test_label_zero_rejected(tmp_path):
    error = check_error(write_csv(tmp_path, "sub.csv", "id,label\n1,0\n"))
    assert error.line == 2


def test_nan_label_rejected(tmp_path):
    path = write_csv(tmp_path, "sub.csv", "id,label\n1,0.5\n2,0.5\n3,nan\n")
    error = check_error(path)
    assert error.line == 4
    assert "NaN" in str(error)


def test_infinite_label_rejected(tmp_path):
    error = check_error(write_csv(tmp_path, "sub.csv", "id,label\n1,inf\n"))
    assert "infinity" in str(error)


def test_text_label_rejected(tmp_path):
    error = check_error(write_csv(tmp_path, "sub.csv", "id,label\n1,dog\n"))
    assert "not a number" in str(error)


def test_unsorted_ids_rejected(tmp_path):
    path = write_csv(tmp_path, "sub.csv", "id,label\n1,0.5\n10,0.5\n2,0.5\n")
    error = check_error(path)
    assert error.line == 4
    assert "id 2 comes after id 10" in str(error)


def test_float_id_rejected(tmp_path):
    error = check_error(write_csv(tmp_path, "sub.csv", "id,label\n1.0,0.5\n"))
    assert error.line == 2
    assert "'1.0'" in str(error)


def test_extra_field_rejected(tmp_path):
    error = check_error(write_csv(tmp_path, "sub.csv", "id,label\n1,0.5,x\n"))
    assert "expected 2 fields" in str(error)


def test_blank_line_rejected(tmp_path):
    error = check_error(write_csv(tmp_path, "sub.csv", "id,label\n1,0.5\n\n2,0.5\n"))
    assert error.line == 3


def test_quoted_newline_line_numbers(tmp_path):
    # A quoted field spanning two lines shifts the following line numbers by one.
    path = write_csv(tmp_path, "sub.csv", 'id,label\n1,0.5\n2,"0.5\n"\n3,2.0\n')
    error = check_error(path)
    assert error.line == 5


def test_missing_file_rejected(tmp_path):
    error = check_error(tmp_path / "absent.csv")
    assert "not found" in str(error)


def test_sample_without_id_column(tmp_path):
    sample = write_csv(tmp_path, "sample.csv", "name,label\n1,0.5\n")
    with pytest.raises(SubmissionError, match="no 'id' column"):
        read_sample_ids(sample)


# write_submission


def test_write_sorts_numerically(tmp_path):
    path = tmp_path / "sub.csv"
    write_submission(path, [10, 2, 1, 100, 11], [0.1, 0.2, 0.3, 0.4, 0.5])
    lines = path.read_text().splitlines()
    assert lines[0] == "id,label"
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "10", "11", "100"]
    assert lines[1] == "1,0.3"


def test_write_round_trips_check(tmp_path):
    path = tmp_path / "sub.csv"
    sample = sample_csv(tmp_path, [1, 2, 10, 11, 100])
    write_submission(path, [10, 2, 1, 100, 11], [0.1, 0.2, 0.3, 0.4, 0.5])
    assert check_submission(path, sample_path=sample) == 5


def test_write_keeps_full_precision(tmp_path):
    path = tmp_path / "sub.csv"
    labels = np.array([1e-7, 0.99999999, 0.123456789012345, np.float32(0.7)])
    write_submission(path, np.arange(1, 5), labels)
    _, read_labels = read_submission(path)
    assert read_labels == [float(value) for value in labels]


def test_write_avoids_exponent(tmp_path):
    path = tmp_path / "sub.csv"
    write_submission(path, [1], [1e-7])
    assert path.read_text() == "id,label\n1,0.0000001\n"


def test_write_no_temp_files_left(tmp_path):
    write_submission(tmp_path / "sub.csv", [1], [0.5])
    assert [p.name for p in tmp_path.iterdir()] == ["sub.csv"]


def test_write_creates_parent_folder(tmp_path):
    path = tmp_path / "submissions" / "sub.csv"
    write_submission(path, [1], [0.5])
    assert path.exists()


@pytest.mark.parametrize("bad_label", [math.nan, 0.0, 1.0, -0.1, 1.5, math.inf])
def test_write_rejects_bad_label(tmp_path, bad_label):
    with pytest.raises(ValueError, match="Invalid label"):
        write_submission(tmp_path / "sub.csv", [1, 2], [0.5, bad_label])


def test_write_bad_label_leaves_no_file(tmp_path):
    with pytest.raises(ValueError):
        write_submission(tmp_path / "sub.csv", [1], [math.nan])
    assert not (tmp_path / "sub.csv").exists()


def test_write_rejects_duplicate_ids(tmp_path):
    with pytest.raises(ValueError, match="Duplicate id 2"):
        write_submission(tmp_path / "sub.csv", [1, 2, 2], [0.5, 0.5, 0.5])


def test_write_rejects_length_mismatch(tmp_path):
    with pytest.raises(ValueError, match="2 ids but 1 labels"):
        write_submission(tmp_path / "sub.csv", [1, 2], [0.5])


@pytest.mark.parametrize("bad_id", [1.5, "3", True, -4])
def test_write_rejects_bad_id(tmp_path, bad_id):
    with pytest.raises(ValueError, match="Invalid id"):
        write_submission(tmp_path / "sub.csv", [bad_id], [0.5])


def test_write_rejects_empty(tmp_path):
    with pytest.raises(ValueError, match="No rows"):
        write_submission(tmp_path / "sub.csv", [], [])


# check_submission.py command line


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CLI), *args], capture_output=True, text=True, timeout=60
    )


def test_cli_valid_with_sample(tmp_path):
    sample = sample_csv(tmp_path, [1, 2, 3])
    path = write_csv(tmp_path, "sub.csv", "id,label\n1,0.9\n2,0.1\n3,0.5\n")
    result = run_cli(str(path), "--sample", str(sample))
    assert result.returncode == 0
    assert result.stdout.startswith(f"OK: {path} has 3 rows, ids 1..3")
    assert result.stderr == ""


def test_cli_without_sample_notes_skip(tmp_path):
    path = write_csv(tmp_path, "sub.csv", "id,label\n1,0.9\n")
    result = run_cli(str(path))
    assert result.returncode == 0
    assert "not compared with a sample" in result.stdout


def test_cli_invalid_exits_one(tmp_path):
    path = write_csv(tmp_path, "sub.csv", "id,label\n1,1.0\n")
    result = run_cli(str(path))
    assert result.returncode == 1
    assert "line 2" in result.stderr
    assert result.stdout == ""
