#!/usr/bin/env python
"""Train: ``python train.py --perturbation NAME ...`` (see ``--help``)."""

import sys

from mt_dnn.cli_train import main

if __name__ == "__main__":
    sys.exit(main())
