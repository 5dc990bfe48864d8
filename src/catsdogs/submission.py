"""Writing and checking Kaggle submission files (`id,label`, one row per test photo).

The competition scores P(dog) with log loss, so labels are written with full float
precision and must lie strictly inside (0, 1).
"""

from __future__ import annotations

import csv
import logging
import math
import operator
import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Iterable

logger = logging.getLogger(__name__)

HEADER: tuple[str, str] = ("id", "label")

_DIGITS = re.compile(r"[0-9]+")


class SubmissionError(ValueError):
    """A submission file that Kaggle would reject or score wrongly."""

    def __init__(self, path: str | os.PathLike, problem: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}: line {line}" if line is not None else f"{self.path}"
        super().__init__(f"{where}: {problem}")


def parse_test_id(name: str | os.PathLike) -> int:
    """Parse the integer id from a test photo name, such as `1.jpg` or `0010.JPG`.

    Raises ValueError naming the file when the stem is not made of ASCII digits only.
    """
    stem = Path(name).stem
    if not _DIGITS.fullmatch(stem):
        raise ValueError(
            f"Invalid test photo name {str(name)!r}: expected an integer id before the "
            f"extension, such as 123.jpg"
        )
    return int(stem)


def write_submission(
    path: str | os.PathLike, ids: Iterable[int], labels: Iterable[float]
) -> None:
    """Write `id,label` rows sorted numerically by id, atomically.

    Each label is written as the shortest decimal that reads back as the same float, in
    positional notation (0.0000001, not 1e-07). A fixed format such as `%.6f` would round
    values near 0 and 1, where log loss is most sensitive.

    Raises ValueError for a length mismatch, a non-integer or negative id, a duplicate
    id, or a label that is NaN, infinite or outside the open interval (0, 1). Clip
    predictions first (for example `np.clip(p, 1e-6, 1 - 1e-6)`) if needed.
    """
    id_list = [_as_id(value) for value in ids]
    label_list = [float(value) for value in labels]
    if len(id_list) != len(label_list):
        raise ValueError(f"Got {len(id_list)} ids but {len(label_list)} labels")
    if not id_list:
        raise ValueError("No rows to write: ids and labels are empty")

    first_index: dict[int, int] = {}
    for index, test_id in enumerate(id_list):
        if test_id in first_index:
            raise ValueError(
                f"Duplicate id {test_id} at positions {first_index[test_id]} and {index} "
                f"(0-based)"
            )
        first_index[test_id] = index

    for test_id, label in zip(id_list, label_list):
        problem = _label_problem(label)
        if problem is not None:
            raise ValueError(f"Invalid label {label!r} for id {test_id}: {problem}")

    # Imported here because catsdogs.io imports torch, which takes seconds and which
    # check_submission does not need.
    from catsdogs.io import atomic_write

    rows = sorted(zip(id_list, label_list))
    with atomic_write(path, "w") as handle:
        handle.write(",".join(HEADER) + "\n")
        for test_id, label in rows:
            handle.write(f"{test_id},{_format_label(label)}\n")
    logger.info("Wrote %d rows to %s", len(rows), path)


def check_submission(
    path: str | os.PathLike,
    sample_path: str | os.PathLike | None = None,
    expected_ids: Iterable[int] | None = None,
) -> int:
    """Validate a submission file and return its row count.

    See `read_submission` for the rules. Raises SubmissionError naming the file, the
    first offending line (the header is line 1) and the problem.
    """
    ids, _ = read_submission(path, sample_path=sample_path, expected_ids=expected_ids)
    return len(ids)


def read_submission(
    path: str | os.PathLike,
    sample_path: str | os.PathLike | None = None,
    expected_ids: Iterable[int] | None = None,
) -> tuple[list[int], list[float]]:
    """Validate a submission file and return its ids and labels in file order.

    The header must be exactly `id,label`, and every row must have two fields. Ids must
    be non-negative integers, unique, and sorted in increasing numeric order. Labels must
    be floats strictly inside (0, 1). With `sample_path` (Kaggle's sample_submission.csv)
    or `expected_ids`, the set of ids must equal the expected set exactly. Pass at most
    one of the two. The first rule broken raises SubmissionError, which names the file,
    the line (the header is line 1) and the problem. Passing both raises ValueError.
    """
    if sample_path is not None and expected_ids is not None:
        raise ValueError("Pass sample_path or expected_ids, not both")

    expected: set[int] | None = None
    source = ""
    if sample_path is not None:
        expected = set(read_sample_ids(sample_path))
        source = f"sample {sample_path}"
    elif expected_ids is not None:
        expected = {_as_id(value) for value in expected_ids}
        source = "expected ids"

    rows = _read_csv_rows(path)
    _check_header(path, rows)

    ids: list[int] = []
    labels: list[float] = []
    line_of_id: dict[int, int] = {}
    for line, fields in rows[1:]:
        test_id, label = _parse_row(path, line, fields)

        if test_id in line_of_id:
            raise SubmissionError(
                path, f"duplicate id {test_id} (first seen on line {line_of_id[test_id]})", line
            )
        if ids and test_id < ids[-1]:
            raise SubmissionError(
                path,
                f"ids are not sorted: id {test_id} comes after id {ids[-1]} on line "
                f"{line_of_id[ids[-1]]}. Sort rows numerically by id",
                line,
            )
        if expected is not None and test_id not in expected:
            raise SubmissionError(path, f"id {test_id} is not in the {source}", line)

        line_of_id[test_id] = line
        ids.append(test_id)
        labels.append(label)

    if not ids:
        raise SubmissionError(path, "no data rows after the header")

    if expected is not None and len(ids) != len(expected):
        missing = sorted(expected.difference(line_of_id))
        raise SubmissionError(
            path,
            f"{len(missing)} ids from the {source} are missing, the first is id {missing[0]}",
        )
    return ids, labels


def read_sample_ids(sample_path: str | os.PathLike) -> list[int]:
    """Read the `id` column of Kaggle's sample submission, in file order.

    Raises SubmissionError when the file cannot be read, has no `id` column or no rows,
    or contains an id that is not an integer.
    """
    rows = _read_csv_rows(sample_path)
    if not rows:
        raise SubmissionError(sample_path, "empty sample submission")
    header_line, header = rows[0]
    if "id" not in header:
        raise SubmissionError(sample_path, f"no 'id' column in header {header}", header_line)
    id_column = header.index("id")

    sample_ids = []
    for line, fields in rows[1:]:
        text = fields[id_column] if id_column < len(fields) else ""
        if not _DIGITS.fullmatch(text):
            raise SubmissionError(sample_path, f"id {text!r} is not an integer", line)
        sample_ids.append(int(text))
    if not sample_ids:
        raise SubmissionError(sample_path, "no data rows after the header")
    return sample_ids


def _read_csv_rows(path: str | os.PathLike) -> list[tuple[int, list[str]]]:
    """Read all CSV rows as (line number of the row's first line, fields)."""
    try:
        # utf-8-sig accepts the byte-order mark that some spreadsheet programs write.
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            rows = []
            line = 1
            for fields in reader:
                rows.append((line, fields))
                line = reader.line_num + 1
    except FileNotFoundError as exc:
        raise SubmissionError(path, "file not found") from exc
    except UnicodeDecodeError as exc:
        raise SubmissionError(path, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except csv.Error as exc:
        raise SubmissionError(path, f"invalid CSV ({exc})") from exc
    except OSError as exc:
        raise SubmissionError(path, f"cannot be read ({exc.strerror})") from exc
    return rows


def _check_header(path: str | os.PathLike, rows: list[tuple[int, list[str]]]) -> None:
    if not rows:
        raise SubmissionError(path, "empty file, expected the header 'id,label'")
    line, header = rows[0]
    if tuple(header) == HEADER:
        return

    header_text = ",".join(header)
    problem = f"header is {header_text!r}, expected exactly 'id,label'"
    if len(header) == 3 and tuple(header[1:]) == HEADER:
        problem += (
            ". The first column looks like a DataFrame index, so write the file with "
            "index=False"
        )
    raise SubmissionError(path, problem, line)


def _parse_row(path: str | os.PathLike, line: int, fields: list[str]) -> tuple[int, float]:
    if not fields:
        raise SubmissionError(path, "blank line", line)
    if len(fields) != 2:
        raise SubmissionError(path, f"expected 2 fields (id,label), got {len(fields)}", line)
    id_text, label_text = fields

    if not _DIGITS.fullmatch(id_text):
        raise SubmissionError(path, f"id {id_text!r} is not a non-negative integer", line)
    test_id = int(id_text)

    try:
        label = float(label_text)
    except ValueError:
        raise SubmissionError(
            path, f"label {label_text!r} for id {test_id} is not a number", line
        ) from None
    problem = _label_problem(label)
    if problem is not None:
        raise SubmissionError(
            path, f"invalid label {label_text!r} for id {test_id}: {problem}", line
        )
    return test_id, label


def _label_problem(label: float) -> str | None:
    if math.isnan(label):
        return "NaN is not a probability"
    if math.isinf(label):
        return "infinity is not a probability"
    if not 0.0 < label < 1.0:
        return (
            "labels must be strictly inside (0, 1) because 0 or 1 gives infinite log loss "
            "on a wrong answer. Clip predictions, for example to [1e-6, 1 - 1e-6]"
        )
    return None


def _format_label(label: float) -> str:
    # repr gives the shortest digits that round-trip, and Decimal prints them without
    # an exponent.
    return format(Decimal(repr(label)), "f")


def _as_id(value: object) -> int:
    # operator.index accepts Python and NumPy integers but not floats or strings.
    if isinstance(value, bool):
        raise ValueError(f"Invalid id {value!r}: expected an integer, got a bool")
    try:
        test_id = operator.index(value)
    except TypeError:
        raise ValueError(f"Invalid id {value!r}: expected an integer") from None
    if test_id < 0:
        raise ValueError(f"Invalid id {test_id}: ids are non-negative")
    return test_id
