"""Scripts that reproduce the paper's tables and figures from training run folders."""
