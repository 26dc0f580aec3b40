"""Table 3 of the paper: WordNet synonyms (WordNet_1.0, WordNet_0.5) and 1-1 with noise_size 1.0.

Its fine-tuning and SMART rows are Table 2's runs: "+SMART" (``smart_mtdnn``, MT-DNN's code, the
paper's values beside it) and "+SMART (corrected)" (``smart``, no paper value). The grid lists
them too, but they live in the same RUNS folder (RUNS/<model>/none/, RUNS/<model>/smart_mtdnn/,
RUNS/<model>/smart/), so when Table 2 has run they are found finished and skipped, never trained twice. Same flags as experiments.table2.
WordNet 3.0 must be installed (scripts/install_wordnet.sh).

    python -m experiments.table3 [--preset cpu] [--dry_run]
"""

from __future__ import annotations

import sys

from experiments.table2 import render_table2, run_table

# none and both SMARTs come first and are shared with Table 2.
METHODS = ("none", "smart_mtdnn", "smart", "wordnet_1.0", "1-1_1.0", "wordnet_0.5")


def main(argv: list[str] | None = None) -> int:
    return run_table(argv=argv, prog="python -m experiments.table3", description=__doc__, default_methods=METHODS,
                     title="Table 3: WordNet synonyms and 1-1_1.0 (ANLI, All)", out_name="table3.md",
                     render=render_table2)


if __name__ == "__main__":
    sys.exit(main())
