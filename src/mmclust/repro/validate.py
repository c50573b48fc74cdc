"""Usage validation: every value a user types is typed and checked before anything is written.

A bad value is a usage error (:class:`mmclust.DataError`, exit code 2 on the command line) raised *before* a
store is opened or a run row is claimed, so it never leaves a ``failed`` or ``running`` row behind.

Hyperparameters follow scikit-learn's ``_parameter_constraints`` convention: one table per estimator, checked
with :func:`sklearn.utils._param_validation.validate_parameter_constraints`. A class may declare its own table;
parameters it does not list get one derived from their default (see :func:`parameter_constraints`), so every
method, including ones added later, is checked. Strings from ``--set NAME=VALUE`` are typed by the parameter's
default (:func:`parse_override`): ``standardize=False`` is the boolean False, never the truthy string "False".
"""

from __future__ import annotations

import json
import math
import re
from numbers import Integral, Real

from ..data import DataError
from ..data import registry as _registry

__all__ = ["SEED_MAX", "parameter_constraints", "check_params", "parse_override", "parse_overrides", "check_seed",
           "check_count", "check_device", "data_problem", "require_data", "VALID_DEVICES"]

SEED_MAX = 2**32 - 1  # numpy / scikit-learn accept seeds in [0, 2**32 - 1]
VALID_DEVICES = ("auto", "cpu", "cuda", "cuda:N")


def _interval(kind, low, high=None, closed="left"):
    from sklearn.utils._param_validation import Interval

    return Interval(kind, low, high, closed=closed)


def _by_name(name: str) -> list | None:
    """Constraints that hold for a parameter of this name in every estimator (the shared vocabulary)."""
    if name == "n_clusters":  # None: take k from the data set's labels
        return [_interval(Integral, 2, None), None]
    if name == "random_state":
        return [_interval(Integral, 0, SEED_MAX, closed="both"), None]
    if name == "device":
        return [str]
    if name == "verbose":
        return ["boolean"]
    if name == "max_epochs":  # zero epochs would return the initialisation as a result
        return [_interval(Integral, 1, None)]
    if name.endswith("_epochs"):  # a pre-training phase may be skipped
        return [_interval(Integral, 0, None)]
    if name in ("corruption", "momentum"):  # a fraction of inputs dropped / of the last step kept
        return [_interval(Real, 0.0, 1.0, closed="left")]
    if name == "lr" or name.endswith("_lr"):
        return [_interval(Real, 0.0, None, closed="neither")]
    return None


def _by_default(default) -> list | str:
    """Constraints implied by a default's type: counts and sizes are >= 1, real weights >= 0 and finite."""
    if isinstance(default, bool):
        return ["boolean"]
    if isinstance(default, Integral):
        return [_interval(Integral, 1, None)]
    if isinstance(default, Real):
        # the right-open interval excludes inf; NaN fails every interval
        return [_interval(Real, 0.0, None, closed="left")]
    if isinstance(default, (tuple, list)):
        return [tuple, list]
    if isinstance(default, str):
        return [str]
    # a None default says nothing about the type the parameter takes (an option, a size, ...): the method checks it
    return [type(default)] if default is not None else "no_validation"


def parameter_constraints(cls) -> dict:
    """``{parameter: [constraints]}`` for an estimator class (its own table first, then by name, then by default)."""
    own = dict(getattr(cls, "_parameter_constraints", None) or {})
    table = {}
    for name, default in cls().get_params().items():
        table[name] = own.get(name) or _by_name(name) or _by_default(default)
    return table


def _check_sizes(cls, params: dict) -> None:
    """Layer-width tuples: sequences of integers >= 1 (a table entry cannot say "of"). Empty is a setting, not a
    mistake: no hidden layer, a linear map (DM2C's NUS-WIDE generators, 128 -> 128, Section 4.2)."""
    defaults = cls().get_params()
    for name, value in params.items():
        # a width list, where the default is one or "auto" (sized from the data)
        if isinstance(value, (tuple, list)) and (isinstance(defaults.get(name), (tuple, list)) or defaults.get(name) == "auto"):
            if not all(isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in value):
                raise DataError(f"parameter {name!r} of {cls.__name__} must be a list of integers >= 1, got {value!r}")


def check_params(cls, params: dict) -> None:
    """Raise :class:`DataError` naming the parameter and its allowed values when ``params`` break the table."""
    from sklearn.utils._param_validation import InvalidParameterError, validate_parameter_constraints

    table = parameter_constraints(cls)
    try:
        validate_parameter_constraints({k: v for k, v in table.items() if k in params},
                                       {k: v for k, v in params.items() if k in table}, caller_name=cls.__name__)
    except InvalidParameterError as err:
        raise DataError(str(err)) from None
    _check_sizes(cls, params)


_TRUE, _FALSE = ("true", "1"), ("false", "0")  # strict: "yes", "on", "False!" are refused, never guessed


def _type_name(default) -> str:
    if isinstance(default, bool):
        return "a boolean (true/false/1/0)"
    if isinstance(default, Integral):
        return "an integer"
    if isinstance(default, Real):
        return "a finite number"
    if isinstance(default, (tuple, list)):
        return "a list of integers such as 256,128"
    return "text"


def parse_override(key: str, text: str, default):
    """The typed value of ``--set key=text``, by the parameter's default; DataError naming key, value, type."""
    raw = text.strip()
    low = raw.lower()
    where = f"--set {key}={text}"
    try:
        if isinstance(default, bool):
            if low in _TRUE or low in _FALSE:
                return low in _TRUE
            raise ValueError
        if isinstance(default, Integral):
            return int(raw)  # int("2.5") and int("abc") raise: no silent truncation
        if isinstance(default, Real):
            value = float(raw)
            if not math.isfinite(value):
                raise ValueError
            return value
        if isinstance(default, (tuple, list)):
            items = json.loads(raw) if raw.startswith("[") else [v for v in raw.strip("()").split(",") if v.strip()]
            if not isinstance(items, list):
                raise ValueError
            return tuple(int(v) if isinstance(v, str) else v for v in items)
        if default is None:  # e.g. n_clusters: None, an integer, or (to be refused by the table) anything else
            if low in ("none", "null", ""):
                return None
            for kind in (int, float):
                try:
                    return kind(raw)
                except ValueError:
                    pass
            return raw
        if default == "auto" and re.fullmatch(r"[\[(]?\s*\d+(\s*,\s*\d+)*\s*,?\s*[\])]?", raw):
            return tuple(int(v) for v in re.findall(r"\d+", raw))  # layer widths whose default is "auto"
        return text
    except (ValueError, TypeError, json.JSONDecodeError):
        raise DataError(f"{where}: {key!r} expects {_type_name(default)} (default {default!r}), got {text!r}") from None


def parse_overrides(method_cls, pairs, defaults: dict | None = None) -> dict:
    """``["name=value", ...]`` -> typed overrides; unknown names are left for :meth:`RunSpec.validate` to report."""
    defaults = method_cls().get_params() if defaults is None else defaults
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise DataError(f"override {pair!r} must look like name=value")
        key, value = pair.split("=", 1)
        out[key] = parse_override(key, value, defaults[key]) if key in defaults else value
    return out


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, Integral) or not 0 <= seed <= SEED_MAX:
        raise DataError(f"seed must be an integer in [0, {SEED_MAX}], got {seed!r}")
    return int(seed)


def check_count(flag: str, value, minimum: int = 1):
    """``--runs`` / ``--jobs`` / ``--max-epochs``: an integer >= minimum (None passes: the option was not given)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise DataError(f"{flag} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_device(device, available: bool = True) -> str:
    """A device name torch knows and mmclust runs on; with ``available`` also present on this machine."""
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return device
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DataError(f"unknown device {device!r}; valid: {', '.join(VALID_DEVICES)}") from None
    if dev.type not in ("cpu", "cuda"):
        raise DataError(f"unknown device {device!r}; valid: {', '.join(VALID_DEVICES)}")
    if available and dev.type == "cuda":
        if not torch.cuda.is_available():
            built = f"torch {torch.__version__} built {'with CUDA ' + torch.version.cuda if torch.version.cuda else 'without CUDA'}"
            raise DataError(f"device {device!r}: CUDA is not available here ({built}, or no GPU visible); "
                            "use --device cpu, or auto to take a GPU when there is one")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise DataError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def data_problem(name: str) -> str | None:
    """Why a registered data set cannot be used now (missing / corrupt, with the file and the fix), else None."""
    spec = _registry.get_spec(name)
    state = _registry.status(name)
    if state == "missing":
        fix = spec.how_to_supply or f"copy {spec.file} (published at {spec.source}) there"
        return (f"{name}: data file {spec.file} not found in {_registry.data_dir()} "
                f"(set MMCLUST_DATA to the folder that holds it); {fix}")
    if state == "corrupt":
        return (f"{name}: data file {spec.path} is corrupt (its sha256 is not the registered one; "
                f"`mmclust datasets` shows it): replace it with an intact copy of {spec.source}")
    return None


def require_data(name: str) -> None:
    problem = data_problem(name)
    if problem:
        raise DataError(problem)
