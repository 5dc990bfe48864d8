#!/usr/bin/env bash
# Check a submission CSV against the sample submission, then upload it to Kaggle.
#
# Usage: scripts/submit.sh [FILE] [MESSAGE]
#   FILE     submission CSV (default: submissions/submission.csv)
#   MESSAGE  submission description shown on Kaggle (default: file name and git commit)
# Environment:
#   SAMPLE_SUBMISSION  sample CSV whose ids FILE must match
#                      (default: data/dogs-vs-cats/sample_submission.csv)
#   PYTHON             interpreter for the check (default: .venv/bin/python, else python3)
#
# Needs the `kaggle` CLI and an API token: ~/.kaggle/kaggle.json (or
# $KAGGLE_CONFIG_DIR/kaggle.json), KAGGLE_USERNAME and KAGGLE_KEY, or, with kaggle 1.8
# or later, KAGGLE_API_TOKEN or ~/.kaggle/access_token.
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
if [[ $# -gt 2 ]]; then
    print_usage >&2
    exit 2
fi

FILE="${1:-$ROOT/submissions/submission.csv}"
SAMPLE="${SAMPLE_SUBMISSION:-$ROOT/data/dogs-vs-cats/sample_submission.csv}"

if [[ -n "${PYTHON:-}" ]]; then
    python_bin="$PYTHON"
elif [[ -x "$ROOT/.venv/bin/python" ]]; then
    python_bin="$ROOT/.venv/bin/python"
else
    python_bin="python3"
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

if [[ ! -f "$FILE" ]]; then
    echo "error: submission file not found: $FILE" >&2
    exit 1
fi
if [[ ! -f "$SAMPLE" ]]; then
    echo "error: sample submission not found: $SAMPLE. Run scripts/download_data.sh or" \
        "set SAMPLE_SUBMISSION to its path." >&2
    exit 1
fi

"$python_bin" "$ROOT/src/check_submission.py" "$FILE" --sample "$SAMPLE"

if [[ $# -ge 2 ]]; then
    MESSAGE="$2"
else
    MESSAGE="$(basename "$FILE")"
    if commit="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)"; then
        MESSAGE="$MESSAGE at commit $commit"
    fi
fi

kaggle competitions submit -c "$COMPETITION" -f "$FILE" -m "$MESSAGE"
