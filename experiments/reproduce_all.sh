#!/usr/bin/env bash
# Every table and figure of the paper, in the order that reuses runs: Table 2, Table 3 (reuses
# Table 2's fine-tuning and SMART runs), Table 4 (no new runs), Figure 3 (reuses the default
# SMART and 1-1 runs), Figure 2. Interrupt it at any time; running it again resumes.
#
#   bash experiments/reproduce_all.sh                  # the paper's grid (GPUs, ANLI train files)
#   bash experiments/reproduce_all.sh --preset cpu     # the same pipeline on the packaged MiniLM, on a CPU
#
# Flags are passed to every grid script (see python -m experiments.table2 --help); the
# environment variables ANLI_DIR, REPRO_RUNS, REPRO_SEEDS, REPRO_GPUS, REPRO_MODELS work too.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export TOKENIZERS_PARALLELISM=false

$PY -m experiments.table2 "$@"
$PY -m experiments.table3 "$@"
$PY -m experiments.table4 --no_train "$@"
$PY -m experiments.figure3 "$@"

# Figure 2 needs no training: the pretrained encoder (the packaged MiniLM for the cpu preset).
preset=${REPRO_PRESET:-paper}
runs=${REPRO_RUNS:-}
data_dir=${ANLI_DIR:-data/anli_v1.0}
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  next=${args[$((i + 1))]:-}
  case "${args[$i]}" in
    --preset) preset=$next ;;
    --preset=*) preset=${args[$i]#--preset=} ;;
    --output) runs=$next ;;
    --output=*) runs=${args[$i]#--output=} ;;
    --data_dir) data_dir=$next ;;
    --data_dir=*) data_dir=${args[$i]#--data_dir=} ;;
  esac
done
if [ "$preset" = cpu ]; then model=packaged-minilm; runs=${runs:-runs/cpu}; else model=bert-base-uncased; runs=${runs:-runs/paper}; fi
$PY -m experiments.figure2 --model "$model" --data_dir "$data_dir" --out "$runs/plots/figure2_${model}.png"
echo "tables: $runs/tables/   plots: $runs/plots/"
