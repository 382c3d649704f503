"""The Prometheus text format (version 0.0.4), written by hand: a few dozen families do not
need a client library, and this module must import nothing heavy, because both the HTTP API
(:mod:`pgjobs.web.metrics`) and the worker's metrics port (:mod:`pgjobs.worker.metrics`) use
it, and a worker does not install FastAPI.

Families are declared once, with their type and help text; an :class:`Exposition` collects
the samples of one scrape and renders them family by family, in declaration order, so that
every family's ``# HELP`` and ``# TYPE`` come once, before its samples.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

KINDS = frozenset({"gauge", "counter", "histogram"})


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # gauge | counter | histogram
    help: str


_LABEL_VALUE = re.compile(r'[\\"\n]')


def escape(value: str) -> str:
    """A label value as the format wants it (backslash, double quote and newline escaped)."""
    return _LABEL_VALUE.sub(lambda m: {"\\": "\\\\", '"': '\\"', "\n": "\\n"}[m.group()], value)


def number(value: float | int | None) -> str:
    """Integers without a decimal point (counters read better), None as NaN."""
    if value is None:
        return "NaN"
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(float(value))


def bound(value: float) -> str:
    """A histogram bucket's ``le`` label."""
    return "+Inf" if value == float("inf") else repr(float(value))


#: One sample: the suffix of its name (``_bucket``, ``_sum``, ``_count`` or ""), its
#: labels, its value.
Sample = tuple[str, Mapping[str, str], "float | int | None"]


@dataclass
class Exposition:
    """Samples grouped by family, rendered in the order of ``families``."""

    families: Mapping[str, Family]
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, name: str, value: float | int | None, **labels: str) -> None:
        assert name in self.families, name
        self.samples.setdefault(name, []).append(("", labels, value))

    def add_histogram(
        self,
        name: str,
        bounds: Sequence[float],
        counts: Sequence[int],
        total: float,
        **labels: str,
    ) -> None:
        """One histogram series: ``counts[i]`` observations fell in bucket ``i`` (at most
        ``bounds[i]``; the last count, one past ``bounds``, is the overflow); rendered
        cumulative, with the ``+Inf`` bucket, ``_sum`` and ``_count``."""
        assert self.families[name].kind == "histogram", name
        assert len(counts) == len(bounds) + 1, name
        out = self.samples.setdefault(name, [])
        running = 0
        for le, count in zip([*bounds, float("inf")], counts, strict=True):
            running += count
            out.append(("_bucket", {**labels, "le": bound(le)}, running))
        out.append(("_sum", labels, total))
        out.append(("_count", labels, running))

    def render(self) -> str:
        lines: list[str] = []
        for name, family in self.families.items():
            samples = self.samples.get(name)
            if not samples:
                continue
            lines.append(f"# HELP {name} {family.help}")
            lines.append(f"# TYPE {name} {family.kind}")
            for suffix, labels, value in samples:
                text = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
                series = f"{name}{suffix}{{{text}}}" if text else f"{name}{suffix}"
                lines.append(f"{series} {number(value)}")
        return "\n".join(lines) + "\n"
