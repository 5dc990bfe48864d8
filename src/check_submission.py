"""Check a Kaggle submission CSV before uploading it.

Usage: python src/check_submission.py FILE [--sample data/dogs-vs-cats/sample_submission.csv]

Exits 0 and prints one OK line when the file is valid, or prints the first problem
to stderr and exits 1.
"""

from __future__ import annotations

import argparse
import sys

from catsdogs.submission import SubmissionError, read_submission


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser."""
    parser = argparse.ArgumentParser(
        description="Check a submission CSV (header id,label, sorted unique integer ids, "
        "labels strictly inside (0, 1)) before uploading it to Kaggle."
    )
    parser.add_argument("file", metavar="FILE", help="submission CSV to check")
    parser.add_argument(
        "--sample",
        metavar="CSV",
        help="Kaggle's sample_submission.csv. When given, the ids must match its ids "
        "exactly. Without it the id set is not checked.",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Check the submission named on the command line and return the exit status."""
    args = build_parser().parse_args(argv)
    try:
        ids, _ = read_submission(args.file, sample_path=args.sample)
    except SubmissionError as exc:
        print(f"Invalid submission: {exc}", file=sys.stderr)
        return 1

    rows = "row" if len(ids) == 1 else "rows"
    line = f"OK: {args.file} has {len(ids)} {rows}, ids {ids[0]}..{ids[-1]}"
    if args.sample is None:
        line += " (ids not compared with a sample because --sample was not given)"
    else:
        line += f", matching {args.sample}"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
