"""Print the available model names with their parameter counts at 1,000 classes.

Usage: python src/list_models.py [PATTERN]

Without PATTERN the hand-written models are listed. PATTERN is an fnmatch pattern such as
'resnet*' or 'timm/efficientnet_lite*' and also lists the matching timm models.
Each line is `name  parameters`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Running `python src/list_models.py` puts src/ first on sys.path; this covers other launchers.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from catsdogs.models import list_models  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="List model names and parameter counts at 1,000 classes.")
    parser.add_argument(
        "pattern",
        nargs="?",
        default=None,
        help="fnmatch pattern over model names, with or without the hand/ or timm/ prefix; "
        "without it only the hand-written models are listed",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    for name, count in list_models(args.pattern):
        print(f"{name}  {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
