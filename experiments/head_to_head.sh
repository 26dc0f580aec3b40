#!/usr/bin/env bash
# The CPU head-to-head: python -m experiments.head_to_head, extra flags pass through. Resumable.
# --suite snli (default): every method x 3 seeds on the packaged MiniLM, trained on SNLI dev, scored on SNLI
#   test (not the official protocol), e.g. `bash experiments/head_to_head.sh --seeds 1 --methods none,1-1`;
#   SNLI from $SNLI_DIR (else data/snli) or --data_dir.
# --suite glue: RTE, MRPC, CoLA, STS-B, SST-2 ($GLUE_DIR) and SNLI, AdvGLUE ($ADVGLUE_DIR), the equivalence
#   verdicts of docs/results/glue_cpu_plan.md; `--suite glue --pilot` first, which prints the grid's command.
# Runs from the project folder, so relative paths are relative to it.
set -euo pipefail
cd "$(dirname "$0")/.."
export TOKENIZERS_PARALLELISM=false
exec "${PYTHON:-python3}" -m experiments.head_to_head "$@"
