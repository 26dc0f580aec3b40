#!/usr/bin/env bash
# Figure 3 (accuracy against SMART's step size and 1-1's noise_size; reuses the default runs):
# python -m experiments.figure3 with the paper's settings (its default preset); extra flags pass through,
# e.g. `bash experiments/figure3.sh --preset cpu` or `--dry_run`. Resumable: run it again after an
# interruption. Runs from the project folder, so relative paths are relative to it.
set -euo pipefail
cd "$(dirname "$0")/.."
export TOKENIZERS_PARALLELISM=false
exec "${PYTHON:-python3}" -m experiments.figure3 "$@"
