#!/usr/bin/env bash
# The GPU check in one command, from the repository root: `bash benchmarks/gpu_check.sh OUT_DIR [gpu_check flags]`.
# Step cost of every method at BERT-base / RoBERTa-large size (bf16 and fp32/TF32), every provider trained
# through train.py, torch.compile if time is left; JSON and summary.txt in OUT_DIR, the whole log in OUT_DIR/log.txt.
# Where the project is not installed (a bare GPU machine), pass --tokenizer DIR (a copy of the packaged
# MiniLM's tokenizer files) and --cache_dir DIR holding synonyms/ (a cached WordNet table: no nltk needed).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR [gpu_check flags]}
shift
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
{
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  python3 -c "import torch, transformers; print('torch', torch.__version__, '| transformers', transformers.__version__, '| cuda', torch.version.cuda)"
  python3 -m benchmarks.gpu_check --json_dir "$out" "$@"
} 2>&1 | tee "$out/log.txt"
