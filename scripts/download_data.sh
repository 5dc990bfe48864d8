#!/usr/bin/env bash
# Download the Dogs vs. Cats Redux competition data from Kaggle and unpack it.
#
# Usage: scripts/download_data.sh [DEST]
#   DEST  target folder (default: data/dogs-vs-cats). It ends up containing train/
#         (25,000 photos named cat.N.jpg and dog.N.jpg), test/ (12,500 photos named N.jpg)
#         and sample_submission.csv.
# Environment:
#   PYTHON  interpreter used to unzip (default: .venv/bin/python, else python3)
#
# Needs the `kaggle` CLI, an API token (~/.kaggle/kaggle.json, $KAGGLE_CONFIG_DIR/kaggle.json,
# KAGGLE_USERNAME and KAGGLE_KEY, or, with kaggle 1.8 or later, KAGGLE_API_TOKEN or
# ~/.kaggle/access_token), and the competition rules accepted once on its Kaggle page.
# If DEST already contains train/ and test/, nothing is downloaded.
set -euo pipefail

COMPETITION="dogs-vs-cats-redux-kernels-edition"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

print_usage() {
    # Print the comment block at the top of this file.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
}

if [[ "${1:-}" == "-h" || "${1:-}" == "--help" ]]; then
    print_usage
    exit 0
fi
if [[ $# -gt 1 ]]; then
    print_usage >&2
    exit 2
fi

DEST="${1:-$ROOT/data/dogs-vs-cats}"

if [[ -n "${PYTHON:-}" ]]; then
    python_bin="$PYTHON"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then
    python_bin="$ROOT/.venv/bin/python"
else
    python_bin="python3"
fi

has_photos() {
    [[ -d "$1" ]] && [[ -n "$(find "$1" -maxdepth 1 -type f -name '*.jpg' -print -quit)" ]]
}

if has_photos "$DEST/train" && has_photos "$DEST/test"; then
    echo "$DEST already contains train/ and test/, so nothing is downloaded."
    exit 0
fi

has_kaggle_token() {
    local config_dir="${KAGGLE_CONFIG_DIR:-$HOME/.kaggle}"
    [[ -n "${KAGGLE_USERNAME:-}" && -n "${KAGGLE_KEY:-}" ]] && return 0
    [[ -n "${KAGGLE_API_TOKEN:-}" ]] && return 0
    [[ -f "$config_dir/kaggle.json" ]] && return 0
    [[ -f "$HOME/.kaggle/access_token" || -f "$HOME/.kaggle/access_token.txt" ]] && return 0
    return 1
}

if ! command -v kaggle >/dev/null 2>&1; then
    echo "error: the kaggle CLI was not found on PATH. Install it with 'pip install kaggle'." >&2
    exit 1
fi
if ! has_kaggle_token; then
    cat >&2 <<MSG
error: no Kaggle API token found. Create one at https://www.kaggle.com/settings (API
section) and either save kaggle.json as ${KAGGLE_CONFIG_DIR:-$HOME/.kaggle}/kaggle.json
(chmod 600), or export KAGGLE_USERNAME and KAGGLE_KEY, or, with kaggle 1.8 or later,
export KAGGLE_API_TOKEN.
MSG
    exit 1
fi

unzip_into() {
    # Python's zipfile module is used so that the `unzip` program is not required.
    "$python_bin" -m zipfile -e "$1" "$2"
}

mkdir -p "$DEST"
if ! kaggle competitions download -c "$COMPETITION" -p "$DEST"; then
    echo "error: download failed. If Kaggle answered 403 Forbidden, accept the rules at" \
        "https://www.kaggle.com/c/$COMPETITION/rules and run this script again." >&2
    exit 1
fi

# The CLI saves one archive named after the competition, which contains train.zip,
# test.zip and sample_submission.csv.
bundle="$DEST/$COMPETITION.zip"
if [[ -f "$bundle" ]]; then
    unzip_into "$bundle" "$DEST"
fi
for part in train test; do
    if [[ ! -f "$DEST/$part.zip" ]]; then
        echo "error: $DEST/$part.zip not found after the download." >&2
        exit 1
    fi
    echo "Unpacking $part.zip"
    unzip_into "$DEST/$part.zip" "$DEST"
done

for part in train test; do
    if ! has_photos "$DEST/$part"; then
        echo "error: $DEST/$part/ is missing or has no .jpg files after unpacking." >&2
        exit 1
    fi
done
if [[ ! -f "$DEST/sample_submission.csv" ]]; then
    echo "warning: $DEST/sample_submission.csv not found. scripts/submit.sh needs it." >&2
fi

train_count="$(find "$DEST/train" -maxdepth 1 -type f -name '*.jpg' | wc -l)"
test_count="$(find "$DEST/test" -maxdepth 1 -type f -name '*.jpg' | wc -l)"
echo "Done: $DEST/train has $train_count photos, $DEST/test has $test_count photos."
