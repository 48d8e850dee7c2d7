"""What the dashboard tests check: the SDK's schema round trip, and the metric names
every panel's PromQL reads."""

from __future__ import annotations

import enum
import json
import sys
import types
import typing
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from grafana_foundation_sdk.cog import runtime
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.plugins import register_default_plugins
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models import prometheus

from monitoring.promql_names import metric_names

EXPORTERS = json.loads((Path(__file__).parent / "exporter_metrics.json").read_text())
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

register_default_plugins()


def schema_problems(dashboard: dict[str, Any]) -> list[str]:
    """Where `dashboard` departs from the Grafana dashboard schema the SDK was generated
    from (schemaVersion 41, Grafana 11.6): decoded into the SDK's model classes and
    encoded again, a field the schema does not know is dropped and a value of the wrong
    shape changes, so everything the JSON says must come back unchanged (the decoder may
    add the schema's defaults). The decoder keeps scalars as they come, so each decoded
    field is then checked against the type the SDK's model class declares for it (numbers,
    strings, enumerations by their values, lists, nested models). Every panel must be a
    panel type the SDK knows and every query a Prometheus query."""
    problems: list[str] = []
    decoded = model.Dashboard.from_json(dashboard)
    again = json.loads(json.dumps(decoded, cls=JSONEncoder, sort_keys=True))
    lost = sorted(_lost(dashboard, again))
    if lost:
        problems.append(f"does not round-trip: {lost}")
    problems += [f"wrong type: {field}" for field in _mistyped(decoded)]
    if dashboard.get("schemaVersion") != model.Dashboard().schema_version:
        problems.append(f"schemaVersion {dashboard.get('schemaVersion')}")
    ids = [panel.get("id") for panel in dashboard.get("panels", [])]
    if len(set(ids)) != len(ids) or None in ids:
        problems.append(f"panel ids not unique: {ids}")
    for panel in decoded.panels or []:
        if isinstance(panel, model.RowPanel):
            continue
        if runtime.panelcfg_config(panel.type_val or "") is None:
            problems.append(f"{panel.title}: unknown panel type {panel.type_val!r}")
        grid = panel.grid_pos
        if grid is None or grid.x + grid.w > 24:
            problems.append(f"{panel.title}: outside the 24-column grid")
        for target in panel.targets or []:
            if not isinstance(target, prometheus.Dataquery) or not target.expr:
                problems.append(f"{panel.title}: a query that is not a Prometheus query")
    return problems


def _lost(sent: Any, back: Any, path: str = "") -> Iterator[str]:
    """Where `back` lacks or changes something `sent` says."""
    if isinstance(sent, dict) and isinstance(back, dict):
        for key in sent:
            if key not in back:
                yield f"{path}.{key}"
            else:
                yield from _lost(sent[key], back[key], f"{path}.{key}")
    elif isinstance(sent, list) and isinstance(back, list) and len(sent) == len(back):
        for i, (x, y) in enumerate(zip(sent, back, strict=True)):
            yield from _lost(x, y, f"{path}[{i}]")
    elif sent != back:
        yield path or "."


def _fits(value: Any, hint: Any) -> bool:
    """Whether a decoded value is of the type the model class declares."""
    origin, args = get_origin(hint), get_args(hint)
    if hint is Any or hint is object:
        return True
    if origin in (Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if origin is Literal:
        return value in args
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        # The decoder leaves enumerations as their JSON values.
        return isinstance(value, hint) or value in {member.value for member in hint}
    if isinstance(hint, type):
        return isinstance(value, hint)
    # Type variables and the like: nothing to hold the value to.
    return True


def _mistyped(decoded: Any, path: str = "") -> Iterator[str]:
    if isinstance(decoded, list):
        for i, item in enumerate(decoded):
            yield from _mistyped(item, f"{path}[{i}]")
        return
    if isinstance(decoded, dict):
        for key, item in decoded.items():
            yield from _mistyped(item, f"{path}.{key}")
        return
    if not hasattr(decoded, "to_json") or isinstance(decoded, runtime.UnknownDataquery):
        return
    cls = type(decoded)
    hints = typing.get_type_hints(cls.__init__, vars(sys.modules[cls.__module__]))
    for name, hint in hints.items():
        if name == "return" or not hasattr(decoded, name):
            continue
        value = getattr(decoded, name)
        if not _fits(value, hint):
            yield f"{path}.{name}: {value!r}"
        yield from _mistyped(value, f"{path}.{name}")


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel."""
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def names_read(dashboards: Iterable[dict[str, Any]]) -> dict[str, set[str]]:
    """Every metric name the dashboards read, with the panels that read it."""
    read: dict[str, set[str]] = {}
    for dashboard in dashboards:
        for title, expr in queries(dashboard):
            for name in metric_names(expr):
                read.setdefault(name, set()).add(f"{dashboard['title']} / {title}")
    return read


def documented_exporter_names() -> set[str]:
    """The series vLLM's and the DCGM exporter's documentation name for the pinned images."""
    names: set[str] = set()
    for exporter in ("vllm", "dcgm"):
        entry = EXPORTERS[exporter]
        names |= set(entry["series"])
        names |= {f"{h}{s}" for h in entry["histograms"] for s in HISTOGRAM_SUFFIXES}
    return names


def exposed_names(exposition: str) -> set[str]:
    """The series names a Prometheus text exposition declares: the samples present, and
    for families that have none yet, the names their type gives them."""
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names |= {sample.name for sample in family.samples}
        if family.type == "counter":
            names |= {f"{family.name}_total", f"{family.name}_created"}
        elif family.type == "histogram":
            names |= {f"{family.name}{s}" for s in (*HISTOGRAM_SUFFIXES, "_created")}
        else:
            names.add(family.name)
    return names


def unknown_names(read: dict[str, set[str]], known: set[str]) -> dict[str, set[str]]:
    return {name: panels for name, panels in read.items() if name not in known}
