"""Install with ``pip install -e .`` (install a torch build for your machine first: see README)."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="mt-dnn-noise",
    version="0.1.0",
    description="MT-DNN-style multi-task fine-tuning with pluggable perturbation providers "
                "(SMART, similar-word noise, WordNet synonyms)",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["mt_dnn", "mt_dnn.*", "noise_training", "noise_training.*",
                                    "experiments", "experiments.*"]),
    py_modules=["train", "predict"],
    install_requires=[
        "torch>=2.1",
        "transformers>=5.0,<6",
        "tokenizers>=0.20",
        "safetensors>=0.4",
        "numpy>=1.24",
        "pyyaml>=6.0",
        "tqdm>=4.60",
        "nltk>=3.8",
        "scipy>=1.10",
        "matplotlib>=3.7",
    ],
    extras_require={
        "test": ["pytest>=7"],
        # noise_training.hf.PerturbationTrainer and examples/: transformers.Trainer needs accelerate
        "hf": ["accelerate>=1.1"],
        # train.py --tensorboard, experiments.figure2 --tensorboard
        "tensorboard": ["tensorboard>=2.14"],
    },
    entry_points={
        "console_scripts": [
            "mtdnn-train=mt_dnn.cli_train:main",
            "mtdnn-predict=mt_dnn.cli_predict:main",
            "mtdnn-summarize=experiments.summarize:main",
        ],
    },
)
