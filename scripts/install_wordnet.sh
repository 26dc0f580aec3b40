#!/usr/bin/env bash
# Install WordNet 3.0 where NLTK can read it (Experiment 3's synonyms need it; tests use the
# real database). Idempotent: does nothing when noise_training.wordnet_data already finds it.
# Order: Debian packages when root with apt-get (offline-friendly mirror of the same 3.0
# data), else NLTK's downloader. Ends with one line saying where WordNet is.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python}"

if where=$("$PYTHON" -m noise_training.wordnet_data 2>/dev/null); then
    echo "$where"
    exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    # A failed apt step falls through to NLTK's downloader instead of aborting.
    if apt-get update -qq >/dev/null \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            wordnet-base wordnet-sense-index >/dev/null; then
        :
    else
        echo "install_wordnet.sh: apt-get install wordnet-base wordnet-sense-index failed; trying nltk.download" >&2
        "$PYTHON" -c "import nltk; nltk.download('wordnet', quiet=True)" >&2 || true
    fi
else
    "$PYTHON" -c "import nltk; nltk.download('wordnet', quiet=True)" >&2 || true
fi

# Lays Debian's files out for NLTK (or finds NLTK's download) and prints where WordNet is;
# its one-line error says how to install WordNet when every route above failed.
"$PYTHON" -m noise_training.wordnet_data
