#!/usr/bin/env bash
# Every table and figure of the paper, in the order that reuses runs, through the per-table scripts beside
# this one: Table 2, Table 3 (reuses Table 2's fine-tuning and SMART runs), Table 4 (no new runs), Figure 3
# (reuses the default SMART and 1-1 runs), Figure 2. Interrupt it at any time; running it again resumes.
#
#   bash experiments/reproduce_all.sh                  # the paper's grid (GPUs, ANLI train files)
#   bash experiments/reproduce_all.sh --preset cpu     # the same pipeline on the packaged MiniLM, on a CPU
#
# Flags are passed to every grid script (see python -m experiments.table2 --help); Figure 2 gets only
# --preset, --output and --data_dir (it trains nothing). The environment variables ANLI_DIR, REPRO_RUNS,
# REPRO_SEEDS, REPRO_GPUS, REPRO_MODELS work too. The SNLI head-to-head is separate: head_to_head.sh.
set -euo pipefail
here="$(dirname "$0")"

bash "$here/table2.sh" "$@"
bash "$here/table3.sh" "$@"
bash "$here/table4.sh" --no_train "$@"
bash "$here/figure3.sh" "$@"

# Figure 2 takes only the flags that say which model and where the plot goes.
figure2_args=()
preset=${REPRO_PRESET:-paper}
runs=${REPRO_RUNS:-}
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  flag=${args[$i]} next=${args[$((i + 1))]:-}
  case "$flag" in
    --preset | --output | --data_dir) figure2_args+=("$flag" "$next") ;;
    --preset=* | --output=* | --data_dir=*) figure2_args+=("$flag") ;;
  esac
  case "$flag" in
    --preset) preset=$next ;;
    --preset=*) preset=${flag#--preset=} ;;
    --output) runs=$next ;;
    --output=*) runs=${flag#--output=} ;;
  esac
done
bash "$here/figure2.sh" ${figure2_args[@]+"${figure2_args[@]}"}
echo "tables: ${runs:-runs/$preset}/tables/   plots: ${runs:-runs/$preset}/plots/"
