#!/usr/bin/env bash
# Table 3 (WordNet_1.0, 1-1_1.0, WordNet_0.5; reuses Table 2's fine-tuning and SMART runs):
# python -m experiments.table3 with the paper's settings (its default preset); extra flags pass through,
# e.g. `bash experiments/table3.sh --preset cpu` or `--dry_run`. Resumable: run it again after an
# interruption. Runs from the project folder, so relative paths are relative to it.
set -euo pipefail
cd "$(dirname "$0")/.."
export TOKENIZERS_PARALLELISM=false
exec "${PYTHON:-python3}" -m experiments.table3 "$@"
