"""Custom metrics from runtimes, as MLServer's `register` and `log`:

    from gateway import metrics

    metrics.register("lexicon_hits", "Lexicon words found in one text")   # e.g. in load()
    metrics.log(lexicon_hits=3)                                          # e.g. in predict()

Each metric is a Prometheus histogram labelled with the model's name and
version. `log` of a name not registered registers it with a default
description (as MLServer does).

These calls only note names and values in the worker process. They reach the
gateway's registry with the worker's next message (the reply to the request
being answered, READY after load(), or a heartbeat), see gateway/control/stats.py.
"""

from __future__ import annotations

import numbers
import re

NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
RESERVED_PREFIX = "gateway_"  # the gateway's own metrics

_registered: dict[str, str] = {}
_unsent: dict[str, str] = {}  # registrations the gateway has not been told of yet
_values: dict[str, list[float]] = {}


def register(name: str, description: str) -> None:
    """Declare a custom metric (a histogram). Registering a name again does nothing."""
    if name in _registered:
        return
    if not NAME.match(name) or name.startswith(RESERVED_PREFIX):
        raise ValueError(f"invalid metric name {name!r}: use letters, digits, '_' and ':', not starting with a digit or {RESERVED_PREFIX!r}")
    _registered[name] = _unsent[name] = description


def log(**values: float) -> None:
    """Record one observation of each named metric."""
    for name, value in values.items():
        if not isinstance(value, numbers.Real):
            raise TypeError(f"metric {name!r}: {value!r} is not a number")
        register(name, f"Custom metric {name}")
        _values.setdefault(name, []).append(float(value))


def take_report() -> dict:
    """What the worker sends with its next message (and forgets): new registrations and values."""
    report: dict[str, dict] = {}
    if _unsent:
        report["register"] = dict(_unsent)
        _unsent.clear()
    if _values:
        report["log"] = dict(_values)
        _values.clear()
    return report
