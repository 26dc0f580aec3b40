#!/usr/bin/env python
"""Predict: ``python predict.py --run_dir RUN --split r3_test --output preds.jsonl`` (see ``--help``)."""

import sys

from mt_dnn.cli_predict import main

if __name__ == "__main__":
    sys.exit(main())
