#!/usr/bin/env bash
# Train every fold of an experiment, then pool the out-of-fold predictions into the CV score.
#
# Usage: bash scripts/train_folds.sh [CONFIG] [key=value ...]
#   FOLDS="0 3" bash scripts/train_folds.sh ...   trains only those folds (the CV needs all of them).
# Folds already finished are skipped, and an interrupted fold resumes from its last epoch, so
# running the same command again after a crash or a kill continues where it stopped.
set -euo pipefail

cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
export PYTHONUNBUFFERED=1
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"

# The folds' first step prints which config a run without arguments picked (GPU or CPU).
"$PYTHON" src/make_folds.py "$@"

all_folds=1
if [[ -n "${FOLDS:-}" ]]; then
  all_folds=0
else
  FOLDS=$("$PYTHON" -c 'import sys; from catsdogs.cli import config_from_args; import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):
    cfg = config_from_args(sys.argv[1:])
print(" ".join(str(k) for k in range(cfg.data.n_folds)))' "$@")
fi

failed=()
for fold in $FOLDS; do
  if ! "$PYTHON" src/train.py "$@" "fold=$fold"; then
    echo "Fold $fold failed; continuing with the other folds" >&2
    failed+=("$fold")
  fi
done

if (( ${#failed[@]} )); then
  echo "Folds ${failed[*]} failed: fix the error above and run the same command again to resume them." >&2
  exit 1
fi
if (( all_folds )); then
  "$PYTHON" src/cv.py "$@"
else
  echo "Trained folds $FOLDS. Once every fold is finished, python src/cv.py with the same arguments prints the CV score."
fi
