"""MT-DNN-style multi-task fine-tuning core: task definitions, data, model, training loop.

It knows nothing of any perturbation provider's internals; providers plug into the
training step through :mod:`noise_training`.
"""

__version__ = "0.1.0"
