#!/usr/bin/env bash
# Figure 2 (token embeddings of she/he/you, clean vs SMART vs 1-1; trains nothing): python -m experiments.figure2
# with the paper's model (bert-base-uncased). Its flags pass through, and so do the grid scripts' --preset and
# --output, so that the same flags work for every script here: `--preset cpu` = the packaged MiniLM with the
# plot under runs/cpu/plots; `--output RUNS` = the plot under RUNS/plots. Runs from the project folder.
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${REPRO_PRESET:-paper}
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --preset|--output)
      [ $# -ge 2 ] || { echo "figure2.sh: error: $1 expects a value" >&2; exit 2; }
      if [ "$1" = --preset ]; then preset=$2; else export REPRO_RUNS=$2; fi
      shift 2 ;;
    --preset=*) preset=${1#--preset=}; shift ;;
    --output=*) export REPRO_RUNS=${1#--output=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
case "$preset" in
  paper) ;;
  cpu) export REPRO_FIGURE2_MODEL=${REPRO_FIGURE2_MODEL:-packaged-minilm} REPRO_RUNS=${REPRO_RUNS:-runs/cpu} ;;
  *) echo "figure2.sh: error: --preset $preset: expected paper or cpu" >&2; exit 2 ;;
esac
export TOKENIZERS_PARALLELISM=false
exec "${PYTHON:-python3}" -m experiments.figure2 ${args[@]+"${args[@]}"}
