#!/usr/bin/env bash
# Table 4 (Tables 2 and 3 per ANLI round; trains nothing new once they are done):
# python -m experiments.table4 with the paper's settings (its default preset); extra flags pass through,
# e.g. `bash experiments/table4.sh --preset cpu` or `--dry_run`. Resumable: run it again after an
# interruption. Runs from the project folder, so relative paths are relative to it.
set -euo pipefail
cd "$(dirname "$0")/.."
export TOKENIZERS_PARALLELISM=false
exec "${PYTHON:-python3}" -m experiments.table4 "$@"
