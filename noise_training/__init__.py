"""Perturbation providers: what the second (adversarial) forward pass of a training step sees.

MT-DNN's SMART module is replaced by providers registered by name; the trainer asks the
registry for the one named by ``--perturbation`` and calls it at one place of the step.
"""
