"""Bad stack configs, made by mutating the committed stack files.

Each must fail with exactly one ConfigError that names the mutated key by its full
`agent-platform:` path, reads as a config problem rather than a traceback, and never
echoes a secret's value.
"""

from __future__ import annotations

import copy
import json
import pathlib
import subprocess
import sys
import time
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pydantic import AfterValidator, BaseModel

from faults.campaign import record
from policies.adapter import to_policy
from policies.catalog import BY_NAME, RULES
from policies.pack_config import PackConfigError, configure, load_file, load_raw, parse
from policies.rule import Rule, config_schema
from stacks.config import NAMESPACE, SECRET_KEYS, ConfigError, StackConfig, load_stack_config
from stacks.simulate import stack_file_config

REPO = pathlib.Path(__file__).resolve().parents[2]
STACKS = ("local", "dev", "prod")
# Distinctive, so that finding one in an error message can only mean it was echoed.
SECRET_VALUES = {
    f"{NAMESPACE}:redisPassword": "RDSPW7F3A9C1E5B2D4680",
    f"{NAMESPACE}:appApiKeys": json.dumps({"team-a": "APIKEY0C9E8D7F6A5B"}),
    f"{NAMESPACE}:modelApiKey": "MODELKEY1A2B3C4D5E6F",
}
# What a message written for people never contains.
TRACEBACK_MARKS = ("Traceback", "pydantic", "errors.pydantic.dev", " object at 0x", "<class ")
EXAMPLES = 600

Path = tuple[str | int, ...]
Tree = dict[str, Any]


@dataclass
class Case:
    """One bad config: the stack's tree of values, its secrets, and the key at fault."""

    kind: str
    stack: str
    tree: Tree
    expected: Path
    secrets: dict[str, str] = field(default_factory=lambda: dict(SECRET_VALUES))
    plaintext: set[str] = field(default_factory=set)

    def raw(self) -> tuple[dict[str, Any], set[str]]:
        """The config as Pulumi hands it over: strings, JSON text for structures."""
        raw: dict[str, Any] = {}
        for name, value in self.tree.items():
            text = value if isinstance(value, str) else json.dumps(value)
            raw[f"{NAMESPACE}:{name}"] = text
        raw.update(self.secrets)
        return raw, set(self.secrets) - self.plaintext


@cache
def _valid_tree(stack: str) -> Tree:
    raw, _ = stack_file_config(stack)
    tree: Tree = {}
    for key, value in raw.items():
        name = key.removeprefix(f"{NAMESPACE}:")
        if key.startswith(f"{NAMESPACE}:") and name not in SECRET_KEYS:
            tree[name] = json.loads(value) if value[:1] in ("{", "[") else value
    return tree


def valid_tree(stack: str) -> Tree:
    return copy.deepcopy(_valid_tree(stack))


def key_of(path: Path) -> str:
    text = str(path[0])
    for part in path[1:]:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return f"{NAMESPACE}:{text}"


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = get_origin(annotation)
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            annotation = next(a for a in get_args(annotation) if a is not type(None))
        else:
            return annotation


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """A model's fields by the key a config file spells them with."""
    return {f.alias or name: f for name, f in model.model_fields.items()}


def annotation_at(path: Path) -> Any:
    annotation: Any = StackConfig
    for part in path:
        if isinstance(part, int):
            annotation = get_args(annotation)[0]
        else:
            annotation = _fields(annotation)[part].annotation
        annotation = _unwrap(annotation)
    return annotation


def kind_of(path: Path) -> str:
    annotation = annotation_at(path)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "mapping"
    if get_origin(annotation) is list:
        return "list"
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    return "text"


def nodes(value: Any, path: Path = ()) -> Iterator[Path]:
    """Every value's path in the tree, outermost first."""
    if path:
        yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from nodes(item, (*path, index))


def get(tree: Tree, path: Path) -> Any:
    value: Any = tree
    for part in path:
        value = value[part]
    return value


def put(tree: Tree, path: Path, value: Any) -> None:
    get(tree, path[:-1])[path[-1]] = value


def remove(tree: Tree, path: Path) -> None:
    del get(tree, path[:-1])[path[-1]]


def known_keys(path: Path) -> set[str]:
    """Every spelling the model at `path` accepts (aliases and field names)."""
    model = annotation_at(path)
    return set(_fields(model)) | set(model.model_fields) | ({"secrets"} if not path else set())


WRONG_TYPES: dict[str, list[Any]] = {
    "mapping": [["a", "list"], "plain text", 7, True],
    "list": ["g5.xlarge", 7, {"not": "a list"}],
    "bool": ["maybe", 7, ["yes"], {"on": True}],
    "int": ["many", "3", True, 2.5, [3], {"n": 3}],
    "float": ["lots", "50", True, [50], {"usd": 50}],
    "text": [12345, True, ["text"], {"key": "text"}],
}
# Pulumi hands top-level values over as text, so only JSON structure changes their type.
TOP_LEVEL_WRONG_TYPES: dict[str, list[Any]] = {
    "mapping": ["plain text", "[1, 2", '["a", "list"]', "- a\n- b", "7"],
    "list": ["g5.xlarge", '{"not": "a list"}'],
    "text": ['["text"]', '{"key": "text"}'],
}


def typos(key: str) -> list[str]:
    swapped = [key[:i] + key[i + 1] + key[i] + key[i + 2 :] for i in range(len(key) - 1)]
    dropped = [key[:i] + key[i + 1 :] for i in range(len(key))]
    return [*swapped, *dropped, key + "s", key.lower(), key.upper(), key.capitalize()]


@st.composite
def wrong_type(draw: st.DrawFn) -> Case:
    stack = draw(st.sampled_from(STACKS))
    tree = valid_tree(stack)
    path = draw(st.sampled_from(list(nodes(tree))))
    kind = kind_of(path)
    table = TOP_LEVEL_WRONG_TYPES if len(path) == 1 else WRONG_TYPES
    if kind not in table:
        kind = "text"
    put(tree, path, draw(st.sampled_from(table[kind])))
    return Case("wrong type", stack, tree, path)


@st.composite
def out_of_range(draw: st.DrawFn) -> Case:
    stack = draw(st.sampled_from(STACKS))
    tree = valid_tree(stack)
    numbers = [p for p in nodes(tree) if kind_of(p) in ("int", "float")]
    path = draw(st.sampled_from(numbers))
    if kind_of(path) == "int":
        # Every count in the config is bounded below by 0 at least.
        value: Any = draw(st.integers(max_value=-1))
    else:
        value = draw(
            st.sampled_from([0.0, float("inf"), float("-inf"), float("nan")])
            | st.floats(max_value=0, allow_nan=False)
        )
    put(tree, path, value)
    return Case("out of range", stack, tree, path)


@st.composite
def unknown_key(draw: st.DrawFn) -> Case:
    stack = draw(st.sampled_from(STACKS))
    tree = valid_tree(stack)
    mappings: list[Path] = [(), *(p for p in nodes(tree) if isinstance(get(tree, p), dict))]
    path = draw(st.sampled_from(mappings))
    target = get(tree, path)
    candidates = [t for k in target for t in typos(k)] + ["secrets", "replicaCount", "x"]
    key = draw(
        st.sampled_from(candidates) | st.from_regex(r"[a-zA-Z][a-zA-Z0-9_.-]{0,12}", fullmatch=True)
    )
    allowed = known_keys(path) | set(SECRET_KEYS)
    if key in allowed:
        key = f"{key}Typo"
    target[key] = draw(st.sampled_from(["value", 3, True, {"a": 1}]))
    return Case("unknown key", stack, tree, (*path, key))


@st.composite
def missing_key(draw: st.DrawFn) -> Case:
    stack = draw(st.sampled_from(STACKS))
    tree = valid_tree(stack)
    required = []
    for path in [(), *nodes(tree)]:
        value = get(tree, path)
        if isinstance(value, dict):
            fields = _fields(annotation_at(path))
            required += [(*path, k) for k in value if k in fields and fields[k].is_required()]
    path = draw(st.sampled_from(required))
    remove(tree, path)
    return Case("missing key", stack, tree, path)


@st.composite
def plaintext_secret(draw: st.DrawFn) -> Case:
    stack = draw(st.sampled_from(STACKS))
    key = draw(st.sampled_from(sorted(SECRET_VALUES)))
    name = key.removeprefix(f"{NAMESPACE}:")
    return Case("plaintext secret", stack, valid_tree(stack), (name,), plaintext={key})


SHORT_SECRET = st.text(alphabet="ABCDEFGHJKLMNPQRSTUVWXYZ23456789", min_size=8, max_size=15)


@st.composite
def bad_secret(draw: st.DrawFn) -> Case:
    stack = draw(st.sampled_from(STACKS))
    case = Case("bad secret", stack, valid_tree(stack), ("redisPassword",))
    marker = draw(SHORT_SECRET)
    if draw(st.booleans()):
        case.secrets[f"{NAMESPACE}:redisPassword"] = marker
    else:
        case.expected = ("appApiKeys",)
        bad_maps = [
            f"{{not json {marker}",
            json.dumps([marker]),
            json.dumps({}),
            json.dumps({"team-a": "", "team-b": marker}),
            json.dumps({"team-a": 5, "team-b": marker}),
            json.dumps(marker),
        ]
        case.secrets[f"{NAMESPACE}:appApiKeys"] = draw(st.sampled_from(bad_maps))
    return case


def _edit(stack: str, expected: Path, change: Callable[[Tree], None]) -> Case:
    tree = valid_tree(stack)
    change(tree)
    return Case("inconsistent", stack, tree, expected)


def _without_model_key(case: Case) -> Case:
    del case.secrets[f"{NAMESPACE}:modelApiKey"]
    return case


def _pool_scaling(tree: Tree, low: int, high: int) -> None:
    tree["gpuPools"][0]["scaling"] = {"minSize": high, "desiredSize": high, "maxSize": low}


INCONSISTENT: list[Callable[[int, int], Case]] = [
    lambda lo, hi: _edit(
        "local", ("cluster",), lambda t: t.update(cluster=_valid_tree("dev")["cluster"])
    ),
    lambda lo, hi: _edit(
        # Rendered manifests have no nodes to simulate a GPU pool on.
        "local",
        ("gpuPools",),
        lambda t: t.update(gpuPools=_valid_tree("dev")["gpuPools"], local={"target": "render"}),
    ),
    lambda lo, hi: _edit(
        "local", ("redis", "mode"), lambda t: t["redis"].update(mode="elasticache")
    ),
    lambda lo, hi: _edit("local", ("llm", "mode"), lambda t: t["llm"].update(mode="vllm")),
    lambda lo, hi: _edit(
        "local", ("autoscaling", "keda"), lambda t: t["autoscaling"].update(keda=True)
    ),
    lambda lo, hi: _edit(
        "dev", ("gateway", "enabled"), lambda t: t.update(gateway={"enabled": True})
    ),
    lambda lo, hi: _edit(
        "prod",
        ("gateway", "tls"),
        lambda t: t["gateway"].pop("tls"),
    ),
    lambda lo, hi: _edit("dev", ("cluster",), lambda t: t.pop("cluster")),
    lambda lo, hi: _edit("dev", ("cluster",), lambda t: t.update(environment="local")),
    lambda lo, hi: _edit("prod", ("llm", "mode"), lambda t: t.update(gpuPools=[])),
    lambda lo, hi: _edit(
        "prod",
        ("operators", "externalSecrets", "enabled"),
        lambda t: t["operators"]["externalSecrets"].update(enabled=False),
    ),
    lambda lo, hi: _edit(
        "prod", ("cluster", "privateEndpoint"), lambda t: t["cluster"].update(privateEndpoint=False)
    ),
    lambda lo, hi: _edit(
        "prod", ("redis", "numCacheClusters"), lambda t: t["redis"].update(numCacheClusters=1)
    ),
    lambda lo, hi: _edit(
        "dev",
        ("canary", "version"),
        lambda t: t.update(
            canary={"version": t["agent"]["version"], "imageTag": "1.9.0", "weight": 10}
        ),
    ),
    # prod releases through Flagger: a manual canary is refused, under its own key.
    lambda lo, hi: _edit(
        "prod",
        ("canary",),
        lambda t: t.update(canary={"version": "1.9.0", "imageTag": "1.9.0", "weight": 10}),
    ),
    lambda lo, hi: _edit(
        "prod",
        ("progressiveDelivery", "enabled"),
        lambda t: t["operators"].pop("flagger"),
    ),
    lambda lo, hi: _without_model_key(
        _edit(
            "local",
            ("modelApiKey",),
            lambda t: t.update(llm={"mode": "external", "model": "m", "baseUrl": "http://llm"}),
        )
    ),
    lambda lo, hi: _edit(
        "local", ("llm",), lambda t: t.update(llm={"mode": "external", "model": "m"})
    ),
    lambda lo, hi: _edit(
        "local",
        ("autoscaling",),
        lambda t: t["autoscaling"].update(minReplicas=hi, maxReplicas=lo),
    ),
    lambda lo, hi: _edit("dev", ("gpuPools", 0, "scaling"), lambda t: _pool_scaling(t, lo, hi)),
    lambda lo, hi: _edit(
        "prod",
        ("cluster", "systemPool", "scaling"),
        lambda t: t["cluster"]["systemPool"].update(
            scaling={"minSize": lo, "desiredSize": hi + 1, "maxSize": hi}
        ),
    ),
    lambda lo, hi: _edit(
        "prod",
        ("agent", "api"),
        lambda t: t["agent"]["api"].update(cpuRequest=str(hi), cpuLimit=f"{lo}"),
    ),
    lambda lo, hi: _edit(
        "local",
        ("agent", "worker"),
        lambda t: t["agent"].update(
            worker={
                "cpuRequest": "1",
                "cpuLimit": "2",
                "memoryRequest": f"{hi}Gi",
                "memoryLimit": f"{lo}Gi",
            }
        ),
    ),
]


@st.composite
def inconsistent(draw: st.DrawFn) -> Case:
    low = draw(st.integers(min_value=1, max_value=50))
    high = draw(st.integers(min_value=low + 1, max_value=100))
    return draw(st.sampled_from(INCONSISTENT))(low, high)


MUTATIONS = {
    "wrong type": wrong_type(),
    "out of range": out_of_range(),
    "unknown key": unknown_key(),
    "missing key": missing_key(),
    "plaintext secret": plaintext_secret(),
    "bad secret": bad_secret(),
    "inconsistent": inconsistent(),
}


@dataclass
class Outcome:
    case: Case
    lost: str | None
    detail: str


def judge(case: Case) -> Outcome:
    raw, secret_keys = case.raw()
    try:
        load_stack_config(raw, secret_keys)
    except ConfigError as error:
        message = str(error)
        named = f"{key_of(case.expected)}: "
        if any(secret in message for secret in _secret_texts(case)):
            return Outcome(case, "secrets echoed", message)
        if (
            type(error) is not ConfigError
            or not any(p.startswith(named) for p in error.problems)
            or not all(p.startswith(f"{NAMESPACE}:") for p in error.problems)
            or any(mark in message for mark in TRACEBACK_MARKS)
        ):
            return Outcome(case, "unclear errors", message)
        return Outcome(case, None, message)
    except Exception as error:
        return Outcome(case, "other exceptions", repr(error))
    return Outcome(case, "accepted", "")


def _secret_texts(case: Case) -> list[str]:
    texts = []
    for value in case.secrets.values():
        texts.append(value)
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            continue
        if isinstance(decoded, dict):
            texts += [v for v in decoded.values() if isinstance(v, str) and len(v) >= 8]
    return [t for t in texts if len(t) >= 8]


def test_bad_stack_configs_each_give_one_clear_error() -> None:
    started = time.monotonic()
    outcomes: list[Outcome] = []

    @given(case=st.one_of(*MUTATIONS.values()))
    @settings(
        derandomize=True,
        database=None,
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Case) -> None:
        outcomes.append(judge(case))

    run()
    lost: dict[str, int | float] = {
        "accepted": 0,
        "other exceptions": 0,
        "unclear errors": 0,
        "secrets echoed": 0,
    }
    for outcome in outcomes:
        if outcome.lost:
            lost[outcome.lost] += 1
    per_kind = {kind: sum(o.case.kind == kind for o in outcomes) for kind in MUTATIONS}
    record(
        "bad-stack-configs",
        tried={"configs": len(outcomes), "mutation kinds": len(MUTATIONS)},
        lost=lost,
        figures={
            "configs per mutation kind": per_kind,
            "stacks": list(STACKS),
            "distinct keys named": len({key_of(o.case.expected) for o in outcomes}),
        },
        seconds=time.monotonic() - started,
    )
    bad = [o for o in outcomes if o.lost]
    assert not bad, "\n".join(
        f"{o.lost}: {o.case.kind} {key_of(o.case.expected)} on {o.case.stack}: {o.detail}"
        for o in bad[:10]
    )
    assert all(per_kind.values()), per_kind


def test_every_mutation_starts_from_a_valid_stack() -> None:
    for stack in STACKS:
        raw, secret_keys = Case("none", stack, valid_tree(stack), ("environment",)).raw()
        assert load_stack_config(raw, secret_keys).environment.value == stack


def test_non_mapping_config_values_name_their_key() -> None:
    # Whole sections given as YAML lists or scalars, as `pulumi config set` would store them.
    for text in ("in-cluster", "[]", "- mode: in-cluster", "null", "{"):
        case = Case("non-mapping", "local", valid_tree("local"), ("redis",))
        case.tree["redis"] = text
        outcome = judge(case)
        assert outcome.lost is None, (text, outcome.detail)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        # Each was once accepted: the section silently dropped, an infinite budget, a
        # boolean or text read as a number.
        (("secrets",), {"redisPassword": "x"}),
        (("budget", "monthlyUsd"), float("inf")),
        (("redis", "storageGi"), True),
        (("autoscaling", "minReplicas"), "2"),
    ],
)
def test_once_accepted_bad_values_are_rejected(path: Path, value: Any) -> None:
    tree = valid_tree("local")
    put(tree, path, value)
    outcome = judge(Case("regression", "local", tree, path))
    assert outcome.lost is None, outcome.detail


# ---- policy configs: policies/config/<stack>.json, the engine's --policy-pack-config ----

POLICY_STACKS = ("local", "dev", "prod")
RULE_NAMES = [rule.name for rule in RULES]
CONFIGURABLE = {rule.name: rule for rule in RULES if rule.config.model_fields}
POLICY_EXAMPLES = 500


@dataclass
class PolicyCase:
    """One bad policy config (as JSON text) and the words its error must hold together."""

    kind: str
    stack: str
    text: str
    expected: tuple[str, ...]


def policy_raw(stack: str) -> dict[str, Any]:
    return copy.deepcopy(_policy_raw(stack))


@cache
def _policy_raw(stack: str) -> dict[str, Any]:
    return load_raw(stack)


def _entry(raw: dict[str, Any], name: str) -> dict[str, Any]:
    """The policy's entry in object form, keeping any level it had."""
    entry = raw.get(name)
    if isinstance(entry, dict):
        return entry
    raw[name] = {"enforcementLevel": entry} if isinstance(entry, str) else {}
    result: dict[str, Any] = raw[name]
    return result


def _minimum(rule: Rule, setting: str) -> float:
    """The setting's lower bound, as the engine's JSON schema states it."""
    schema = config_schema(rule.config)[setting]
    for option in [schema, *schema.get("anyOf", [])]:
        if "minimum" in option:
            return float(option["minimum"])
    return 0.0


def setting_kind(rule: Rule, setting: str) -> str:
    info = rule.config.model_fields[setting]
    annotation = _unwrap(info.annotation)
    if any(isinstance(m, AfterValidator) for m in info.metadata):
        return "quantity" if setting.startswith("max_") else "pattern"
    origin = get_origin(annotation)
    if origin is Literal:
        return "choice"
    if origin is tuple:
        return "patterns" if setting.endswith("_patterns") else "names"
    if origin is dict:
        return "table"
    return {bool: "bool", int: "int", float: "float"}.get(annotation, "text")


SETTING_WRONG_TYPES: dict[str, list[Any]] = {
    "int": ["many", "3", True, 2.5, [3], {"n": 3}, None],
    "float": ["lots", "50", True, [50], {"usd": 50}],
    "bool": ["yes", "true", 1, [True], None],
    "text": [5, True, ["text"], {"k": "v"}, None],
    "quantity": [8, True, ["8"], None],
    "pattern": [5, ["^v"], None],
    "choice": [5, ["NoSchedule"], None],
    "names": ["one-name", [1, 2], {"a": 1}, 5, None],
    "patterns": ["^one$", [1], 5],
    "table": ["x", ["a"], {"a-*": "not-a-list"}, {"a-*": [1]}, 5],
}
SETTING_OUT_OF_RANGE: dict[str, list[Any]] = {
    "quantity": ["lots", "-1", "", "1.5.5", "10 Gi", "8Gb"],
    "pattern": ["(", "[a-", "*tag", "(?P<x"],
    "patterns": [["^ok$", "("], ["[unclosed"]],
    "choice": ["Sometimes", "noschedule", ""],
}
TABLE_OUT_OF_RANGE: dict[str, Any] = {
    "exemptions": {"dcgm-exporter-*": ["runAsRoot"]},
    "allowed_host_paths": {"nvidia-device-plugin-*": ["var/lib/kubelet"]},
    "gpu_node_labels": {"nvidia.com/gpu.present": "(true"},
    # A container allowed secrets in its environment must say why.
    "env_allowed": {"redis": ""},
}
BAD_LEVELS: list[Any] = [
    "loud",
    "Mandatory",
    "",
    "warn",
    "remediate ",
    1,
    True,
    None,
    ["mandatory"],
]
BAD_FILES = [
    "",
    "[]",
    "5",
    '"mandatory"',
    "null",
    "true",
    "{",
    "{'all': 'mandatory'}",
    '{"all": "mandatory",}',
    '{"all": NaN}',
    '{"monthly-budget": {"monthly_budget_usd": Infinity}}',
    '{"monthly-budget": {"monthly_budget_usd": -Infinity}}',
]


@st.composite
def unknown_policy(draw: st.DrawFn) -> PolicyCase:
    stack = draw(st.sampled_from(POLICY_STACKS))
    raw = policy_raw(stack)
    name = draw(
        st.sampled_from([t for n in RULE_NAMES for t in typos(n)] + ["ALL", "All", "*"])
        | st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
    )
    if name in RULE_NAMES or name == "all":
        name = f"{name}-typo"
    raw[name] = draw(st.sampled_from(["mandatory", {"enforcementLevel": "advisory"}]))
    return PolicyCase("unknown policy", stack, json.dumps(raw), (name,))


@st.composite
def bad_level(draw: st.DrawFn) -> PolicyCase:
    stack = draw(st.sampled_from(POLICY_STACKS))
    raw = policy_raw(stack)
    name = draw(st.sampled_from(["all", *RULE_NAMES]))
    level = draw(st.sampled_from(BAD_LEVELS))
    if name != "all" and draw(st.booleans()):
        _entry(raw, name)["enforcementLevel"] = level
        return PolicyCase("bad level", stack, json.dumps(raw), (name, "enforcementLevel"))
    raw[name] = level
    return PolicyCase("bad level", stack, json.dumps(raw), (name,))


@st.composite
def bad_setting(draw: st.DrawFn) -> PolicyCase:
    stack = draw(st.sampled_from(POLICY_STACKS))
    raw = policy_raw(stack)
    rule = CONFIGURABLE[draw(st.sampled_from(sorted(CONFIGURABLE)))]
    setting = draw(st.sampled_from(sorted(rule.config.model_fields)))
    kind = setting_kind(rule, setting)
    value: Any
    if draw(st.booleans()) or kind == "bool":
        value = draw(st.sampled_from(SETTING_WRONG_TYPES[kind]))
        if value is None and not rule.config.model_fields[setting].is_required():
            annotation = rule.config.model_fields[setting].annotation
            if type(None) in get_args(annotation):
                value = "null-not-allowed-here" if kind != "text" else 5
    else:
        if kind in ("int", "float"):
            lowest = _minimum(rule, setting)
            if kind == "int":
                value = draw(st.integers(max_value=int(lowest) - 1, min_value=-(10**9)))
            else:
                value = draw(st.floats(max_value=lowest, exclude_max=True, min_value=-1e12))
        elif kind == "table":
            value = TABLE_OUT_OF_RANGE[setting]
        elif kind in SETTING_OUT_OF_RANGE:
            value = draw(st.sampled_from(SETTING_OUT_OF_RANGE[kind]))
        else:
            value = draw(st.sampled_from(SETTING_WRONG_TYPES[kind]))
    _entry(raw, rule.name)[setting] = value
    return PolicyCase("bad setting", stack, json.dumps(raw), (f"{rule.name}.{setting}",))


@st.composite
def unknown_setting(draw: st.DrawFn) -> PolicyCase:
    stack = draw(st.sampled_from(POLICY_STACKS))
    raw = policy_raw(stack)
    rule = draw(st.sampled_from(RULES))
    known = {"enforcementLevel", *rule.config.model_fields}
    key = draw(st.sampled_from([t for k in sorted(known) for t in typos(k)] + ["budget", "x"]))
    if key in known:
        key = f"{key}_typo"
    _entry(raw, rule.name)[key] = draw(st.sampled_from([1, "mandatory", True, [1]]))
    return PolicyCase("unknown setting", stack, json.dumps(raw), (f"{rule.name}.{key}",))


@st.composite
def bad_entry(draw: st.DrawFn) -> PolicyCase:
    stack = draw(st.sampled_from(POLICY_STACKS))
    raw = policy_raw(stack)
    name = draw(st.sampled_from(RULE_NAMES))
    raw[name] = draw(st.sampled_from([5, [], ["mandatory"], None, True, 0.5]))
    return PolicyCase("entry neither level nor object", stack, json.dumps(raw), (name,))


@st.composite
def bad_file(draw: st.DrawFn) -> PolicyCase:
    stack = draw(st.sampled_from(POLICY_STACKS))
    return PolicyCase(
        "not a JSON object", stack, draw(st.sampled_from(BAD_FILES)), ("policy.json",)
    )


POLICY_MUTATIONS = {
    "unknown policy": unknown_policy(),
    "bad level": bad_level(),
    "bad setting": bad_setting(),
    "unknown setting": unknown_setting(),
    "entry neither level nor object": bad_entry(),
    "not a JSON object": bad_file(),
}


def judge_policy(case: PolicyCase) -> tuple[str | None, str]:
    try:
        configure(RULES, parse(case.text, "policy.json"))
    except PackConfigError as error:
        message = str(error)
        clear = (
            type(error) is PackConfigError
            # A file-level problem names the file in the heading line.
            and any(
                all(word in line for word in case.expected)
                for line in [message.splitlines()[0], *error.problems]
            )
            and not any(mark in message for mark in TRACEBACK_MARKS)
        )
        return (None if clear else "unclear errors"), message
    except Exception as error:
        return "other exceptions", repr(error)
    return "accepted", ""


def test_bad_policy_configs_each_give_one_clear_error(tmp_path: pathlib.Path) -> None:
    started = time.monotonic()
    outcomes: list[tuple[PolicyCase, str | None, str]] = []

    @given(case=st.one_of(*POLICY_MUTATIONS.values()))
    @settings(
        derandomize=True,
        database=None,
        max_examples=POLICY_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: PolicyCase) -> None:
        outcomes.append((case, *judge_policy(case)))

    run()
    cli = [cli_outcome(tmp_path, case) for case in CLI_CASES]
    lost: dict[str, int | float] = {"accepted": 0, "other exceptions": 0, "unclear errors": 0}
    for _, loss, _ in outcomes:
        if loss:
            lost[loss] += 1
    lost["CLI tracebacks or wrong exit"] = sum(1 for ok, _ in cli if not ok)
    per_kind = {kind: sum(c.kind == kind for c, _, _ in outcomes) for kind in POLICY_MUTATIONS}
    record(
        "bad-policy-configs",
        tried={
            "configs": len(outcomes),
            "mutation kinds": len(POLICY_MUTATIONS),
            "CLI runs": len(cli),
        },
        lost=lost,
        figures={"configs per mutation kind": per_kind, "policies": len(RULE_NAMES)},
        seconds=time.monotonic() - started,
    )
    bad = [(c, loss, detail) for c, loss, detail in outcomes if loss]
    assert not bad, "\n".join(
        f"{loss}: {c.kind} {c.expected}: {c.text[:300]}\n  {detail}" for c, loss, detail in bad[:10]
    )
    assert all(ok for ok, _ in cli), [detail for ok, detail in cli if not ok]
    assert all(per_kind.values()), per_kind


CLI_CASES = [
    PolicyCase(
        "cli",
        "local",
        '{"monthly-budget": {"monthly_budget_usd": "lots"}}',
        ("monthly-budget.monthly_budget_usd",),
    ),
    PolicyCase("cli", "local", "[1", ("line 1",)),
    PolicyCase("cli", "local", '{"no-such-policy": "mandatory"}', ("no-such-policy",)),
]


def cli_outcome(tmp_path: pathlib.Path, case: PolicyCase) -> tuple[bool, str]:
    """The harness CLI on a bad --config file: exit 2 and the problem, no traceback."""
    path = tmp_path / f"{len(list(tmp_path.iterdir()))}.json"
    path.write_text(case.text)
    done = subprocess.run(
        [sys.executable, "-m", "policies.harness", "--stack", case.stack, "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    ok = (
        done.returncode == 2
        and all(word in done.stderr for word in case.expected)
        and "Traceback" not in done.stderr
    )
    return ok, f"exit {done.returncode}: {done.stderr[-500:]}"


def test_unreadable_policy_config_files_name_the_file(tmp_path: pathlib.Path) -> None:
    binary = tmp_path / "binary.json"
    binary.write_bytes(b'{"all": "\xff\xfe"}')
    for path in (binary, tmp_path / "missing.json", tmp_path):
        with pytest.raises(PackConfigError) as caught:
            load_file(path)
        assert str(path) in str(caught.value)


def _no_report(message: str, urn: str | None = None) -> None:
    raise AssertionError(f"a rule ran with a bad config and reported: {message}")


@pytest.mark.parametrize(
    ("policy", "settings_", "named"),
    [
        ("autoscaler-bounds", {"max_replica": 3.0}, "autoscaler-bounds.max_replica"),
        ("pod-limits-within-caps", {"max_cpu_per_pod": "lots"}, "max_cpu_per_pod"),
    ],
)
def test_engine_config_the_schema_lets_through_gets_a_clear_error(
    policy: str, settings_: dict[str, Any], named: str
) -> None:
    # What the engine's JSON-schema check cannot catch reaches the policy as it runs.
    validation = to_policy(BY_NAME[policy])
    assert isinstance(validation, ResourceValidationPolicy)
    args = ResourceValidationArgs(
        "kubernetes:apps/v1:Deployment",
        {},
        "urn:pulumi:local::agent-platform::kubernetes:apps/v1:Deployment::agent-api",
        "agent-api",
        PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), []),
        None,
        settings_,
    )
    with pytest.raises(PackConfigError) as caught:
        validation.validate(args, _no_report)
    assert named in str(caught.value)
    assert not any(mark in str(caught.value) for mark in TRACEBACK_MARKS)
