#!/usr/bin/env bash
# The GPU check in one line, from the repository root: BERT-base- and RoBERTa-large-sized encoders, bf16.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m benchmarks.gpu_check "$@"
