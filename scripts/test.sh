#!/usr/bin/env bash
# The test suite: installs what it needs, then runs pytest offline.
# Real ANLI dev/test files are used when $ANLI_DIR points at them (tests needing them skip otherwise).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh || exit 1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
${PYTHON:-python3} -m pytest -q --durations=15 "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
