"""The providers' own user-facing errors, so that noise_training needs nothing from mt_dnn.

A provider or table raises these for problems a user can cause (a bad option, missing
WordNet data); the command-line entry points print the message as one line and exit 2.
"""

from __future__ import annotations


class ProviderError(Exception):
    """A problem with the user's input to a provider; the message is printed as-is, on one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split("\n")))


class ProviderConfigError(ProviderError):
    """An option value or model that a provider cannot work with."""


class ProviderDataError(ProviderError):
    """Data a provider needs (WordNet, a cached table) that is missing or malformed."""
