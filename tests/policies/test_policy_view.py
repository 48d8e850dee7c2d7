"""Normalising what the engine and the mocks hand the pack into ResourceViews."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from pulumi.output import UNKNOWN as MOCK_UNKNOWN
from pulumi_policy.proxy import UNKNOWN_NUMBER_VALUE, unknown_checking_proxy

from costing.view import UNKNOWN, ResourceView, dig, normalise

SECRET_SIG = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}


def test_mock_unknowns_and_secrets() -> None:
    raw = {"a": MOCK_UNKNOWN, "b": [{**SECRET_SIG, "value": "s3cret"}], "c": 1}
    assert normalise(raw) == {"a": UNKNOWN, "b": ["s3cret"], "c": 1}


def test_engine_proxies_and_sentinels() -> None:
    proxied = unknown_checking_proxy({"spec": {"replicas": UNKNOWN_NUMBER_VALUE, "x": ["y"]}})
    assert normalise(proxied) == {"spec": {"replicas": UNKNOWN, "x": ["y"]}}


def test_other_mappings_sequences_and_secret_dicts_normalise_like_plain_ones() -> None:
    # Exact dicts, lists and strings take a fast path; everything else the general one.
    secret: dict[str, Any] = {**SECRET_SIG, "value": {"k": UNKNOWN_NUMBER_VALUE}}
    raw = MappingProxyType(
        {
            "tuple": ("a", UNKNOWN_NUMBER_VALUE),
            "secret": secret,
            "scalars": [1, 2.5, True, None, "s"],
        }
    )
    assert normalise(raw) == {
        "tuple": ["a", UNKNOWN],
        "secret": {"k": UNKNOWN},
        "scalars": [1, 2.5, True, None, "s"],
    }


def test_dig_reports_absent_and_unknown_steps() -> None:
    props = {"spec": {"containers": [{"name": "api"}], "volumes": UNKNOWN}}
    assert dig(props, "spec", "containers", 0, "name") == "api"
    assert dig(props, "spec", "containers", 3, "name") is None
    assert dig(props, "spec", "volumes", 0, "name") is UNKNOWN
    assert dig(props, "spec", "missing", "deeper") is None


def test_labels_use_kubernetes_names_over_pulumi_names() -> None:
    view = ResourceView.of(
        "kubernetes:apps/v1:Deployment", "api-dep", "", {"metadata": {"name": "agent-api"}}
    )
    assert view.label == "Deployment 'agent-api'"
    assert view.namespace == "default"
    aws = ResourceView.of("aws:eks/cluster:Cluster", "prod", "", {})
    assert aws.label == "Cluster 'prod'"
