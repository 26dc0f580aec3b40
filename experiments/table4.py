"""Table 4 of the paper (appendix C): accuracy per ANLI round (A1, A2, A3) and All, dev and test.

The same runs as Tables 2 and 3 (every method of both): run after them, it finds every run
finished and only prints; run first, it trains the union grid. "+SMART" is ``smart_mtdnn``
(MT-DNN's code, the paper's values beside it), "+SMART (corrected)" is ``smart`` (no paper value). The per-round tables come from
experiments.summarize (mean ± std over seeds, the paper's value in parentheses), followed by
its significance, training-time and perturbation-size tables. Same flags as experiments.table2.

    python -m experiments.table4 [--preset cpu] [--no_train]
"""

from __future__ import annotations

import sys

from experiments.summarize import Summary, render_markdown
from experiments.table2 import TABLE23_METHODS, run_table


def render_table4(*, summary: Summary, title: str, methods: tuple[str, ...], models: tuple[str, ...]) -> str:
    return f"# {title}\n\n" + render_markdown(summary=summary)


def main(argv: list[str] | None = None) -> int:
    return run_table(argv=argv, prog="python -m experiments.table4", description=__doc__,
                     default_methods=TABLE23_METHODS, title="Table 4: accuracy per ANLI round (Tables 2 and 3 broken down)",
                     out_name="table4.md", render=render_table4)


if __name__ == "__main__":
    sys.exit(main())
