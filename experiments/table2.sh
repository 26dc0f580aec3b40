#!/usr/bin/env bash
# Table 2 (ANLI test accuracy: fine-tuning, SMART, 1-1, 1-2, 2-1, 2-2, 2-3):
# python -m experiments.table2 with the paper's settings (its default preset); extra flags pass through,
# e.g. `bash experiments/table2.sh --preset cpu` or `--dry_run`. Resumable: run it again after an
# interruption. Runs from the project folder, so relative paths are relative to it.
set -euo pipefail
cd "$(dirname "$0")/.."
export TOKENIZERS_PARALLELISM=false
exec "${PYTHON:-python3}" -m experiments.table2 "$@"
