"""Providers register themselves here by name; ``--perturbation`` takes its choices from here.

Each provider declares the options it owns (flag name, type, paper default, valid range).
``train.py`` adds the union of all options to its parser with no default, so that an
option given for a provider that does not use it is rejected instead of silently ignored.
Adding a provider means one new module in :mod:`noise_training.providers` and nothing else.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable

from noise_training.errors import ProviderConfigError


@dataclass(frozen=True)
class Option:
    name: str  # the flag is --<name>
    type: Callable[[str], Any]
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None  # returns what was expected, or None if fine

    def validate(self, value: Any) -> Any:
        if self.check is not None:
            problem = self.check(value)
            if problem:
                raise ProviderConfigError(f"--{self.name}: expected {problem}, got {value!r}")
        return value


@dataclass(frozen=True)
class ProviderSpec:
    name: str
    factory: type
    summary: str
    options: tuple[Option, ...] = ()
    fixed: dict[str, Any] = field(default_factory=dict)  # settings the method's name fixes
    aliases: tuple[str, ...] = ()


_REGISTRY: dict[str, ProviderSpec] = {}
# Listings follow the paper's tables; providers added later come after, in registration order.
PAPER_ORDER = ("none", "smart_mtdnn", "smart", "1-1", "1-2", "2-1", "2-2", "2-3", "wordnet_1.0", "1-1_1.0", "wordnet_0.5")
_ALIASES: dict[str, str] = {}


def register_provider(spec: ProviderSpec) -> ProviderSpec:
    for name in (spec.name, *spec.aliases):
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"perturbation provider name {name!r} registered twice")
    _REGISTRY[spec.name] = spec
    for alias in spec.aliases:
        _ALIASES[alias] = spec.name
    return spec


def _load_all() -> None:
    package = importlib.import_module("noise_training.providers")
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"noise_training.providers.{module.name}")
    ordered = sorted(_REGISTRY, key=lambda n: PAPER_ORDER.index(n) if n in PAPER_ORDER else len(PAPER_ORDER))
    if list(_REGISTRY) != ordered:
        specs = {name: _REGISTRY.pop(name) for name in ordered}
        _REGISTRY.update(specs)


def provider_names() -> list[str]:
    _load_all()
    return list(_REGISTRY)


def get_spec(name: str) -> ProviderSpec:
    _load_all()
    canonical = _ALIASES.get(name, name)
    if canonical not in _REGISTRY:
        choices = ", ".join(list(_REGISTRY) + sorted(_ALIASES))
        raise ProviderConfigError(f"--perturbation {name}: unknown provider (choices: {choices})")
    return _REGISTRY[canonical]


def all_options() -> dict[str, Option]:
    _load_all()
    options: dict[str, Option] = {}
    for spec in _REGISTRY.values():
        for option in spec.options:
            known = options.setdefault(option.name, option)
            if known.default != option.default or known.type != option.type:
                raise ValueError(f"option --{option.name} is declared differently by two providers")
    return options


def add_provider_arguments(parser: argparse.ArgumentParser) -> None:
    """--perturbation and every provider option (default None = "not given")."""
    _load_all()
    # argparse %-formats help strings: a literal "15%" must be written "15%%"
    escape = lambda text: text.replace("%", "%%")
    aliases = {}
    for alias, name in _ALIASES.items():
        aliases.setdefault(name, []).append(alias)
    width = max(len(name) for name in _REGISTRY)
    lines = [f"  {spec.name:<{width}}  {spec.summary}" + (f" (alias: {', '.join(aliases[spec.name])})"
                                                        if spec.name in aliases else "")
             for spec in _REGISTRY.values()]
    parser.epilog = "perturbation providers (--perturbation NAME):\n" + "\n".join(lines)
    group = parser.add_argument_group("perturbation")
    group.add_argument(
        "--perturbation", default="none", metavar="NAME",
        help=f"what step 2 of each training step sees: {', '.join(_REGISTRY)} (listed below)",
    )
    for option in all_options().values():
        users = [spec.name for spec in _REGISTRY.values() if any(o.name == option.name for o in spec.options)]
        group.add_argument(
            f"--{option.name}", type=option.type, default=None,
            help=escape(f"{option.help} (default {option.default}; used by {', '.join(users)})"),
        )


def resolve_options(*, name: str, given: dict[str, Any]) -> tuple[ProviderSpec, dict[str, Any]]:
    """The provider's spec and its option values: defaults, then what was given, then validated."""
    spec = get_spec(name)
    owned = {option.name: option for option in spec.options}
    for key, value in given.items():
        if value is None:
            continue
        if key in spec.fixed:
            raise ProviderConfigError(
                f"--{key}: fixed to {spec.fixed[key]} by --perturbation {spec.name}; choose another method instead"
            )
        if key not in owned:
            takes = ", ".join(f"--{o}" for o in owned) or "no options"
            raise ProviderConfigError(f"--{key} does not apply to --perturbation {spec.name} (it takes {takes})")
    values = {key: option.validate(given.get(key) if given.get(key) is not None else option.default)
              for key, option in owned.items()}
    values.update(spec.fixed)
    return spec, values


def build_provider(*, name: str, options: dict[str, Any], model, tokenizer, cache_dir):
    spec = get_spec(name)
    return spec.factory(options=options, model=model, tokenizer=tokenizer, cache_dir=cache_dir)


def in_range(low: float, high: float, *, low_open: bool = False, high_open: bool = False):
    def check(value: Any) -> str | None:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if not ok:
            return f"a number in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        return None
    return check


def at_least(low: float):
    def check(value: Any) -> str | None:
        return None if value >= low else f"a number >= {low}"
    return check
