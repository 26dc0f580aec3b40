"""Options shared by several providers, with the paper's defaults."""

from __future__ import annotations

from noise_training.registry import Option, at_least, in_range

ADV_ALPHA = Option(
    "adv_alpha", float, 1.0, "weight α of the adversarial (symmetric KL) loss", check=at_least(0.0),
)
NOISE_SIZE = Option(
    "noise_size", float, 0.5,
    "how far each token embedding moves toward its similar word / synonym: E + s·(E_similar − E)",
    check=in_range(0.0, 1.0),
)
TOP_K = Option(
    "top_k", int, 10, "neighbours kept per vocabulary token; 1-2 draws uniformly among them",
    check=at_least(1),
)
NOISE_RATIO = Option(
    "noise_ratio", float, 0.15, "share of each example's perturbable tokens that get noise",
    check=in_range(0.0, 1.0, low_open=True),
)
