"""The Kubernetes kinds the platform declares, registered without `pulumi_kubernetes`'s
generated per-kind classes.

Naming one kind of `pulumi_kubernetes.core.v1` (or `apps.v1`, `networking.v1`, ...) runs
that API group's whole generated package: every kind of the group and thousands of typed
`*Args`, `*ArgsDict` and output classes. The components pass plain camelCase dicts and
read nothing typed back but `metadata`, so those classes bought nothing, yet importing
them was about 0.45 s of CPU in every `pulumi preview` and `up` (benchmarks/RESULTS.md,
"Engine"). Each class here registers what its generated counterpart registers: the same
type token, `apiVersion` and `kind`, every input property (unset ones as None) and the
computed `status`, the same aliases, secret wrapping and additional secret outputs, and
the provider package's version. The engine, the state and the policies cannot tell them
apart; tests/stacks/test_k8s_objects.py holds each kind to its generated class.

Outputs are the provider's plain values: `obj.metadata["name"]`, not `.metadata.name`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import pulumi

# The generated classes' own defaults (the provider version, its download URL), so the
# two stay in step when the package is upgraded. The top-level package, unlike the API
# groups, is cheap to import.
from pulumi_kubernetes import _utilities


@dataclass(frozen=True)
class Kind:
    api_version: str
    kind: str
    # Input properties besides apiVersion and kind, by their wire (camelCase) names.
    properties: tuple[str, ...]
    # Set by the cluster; registered as None so that the resource exposes them.
    computed: tuple[str, ...] = ()
    # Earlier type tokens of the same kind, as the generated class declares them.
    aliases: tuple[str, ...] = ()
    # Wrapped as secrets and kept secret in the outputs.
    secrets: tuple[str, ...] = ()
    # Refused when missing, unless the object is adopted by URN.
    required: tuple[str, ...] = ()

    @property
    def token(self) -> str:
        group_version = self.api_version if "/" in self.api_version else f"core/{self.api_version}"
        return f"kubernetes:{group_version}:{self.kind}"


class K8sObject(pulumi.CustomResource):
    """One Kubernetes object. Construct a subclass directly: the SDK records the caller
    of the third `__init__` up the stack (this one) as the resource's source position."""

    KIND: ClassVar[Kind]
    metadata: pulumi.Output[dict[str, Any]]

    def __init__(
        self, resource_name: str, *, opts: pulumi.ResourceOptions | None = None, **properties: Any
    ) -> None:
        kind = self.KIND
        unexpected = sorted(set(properties) - set(kind.properties))
        if unexpected:
            raise TypeError(f"{kind.kind} has no properties {unexpected}")
        # Merged in the generated classes' order: defaults, the caller's, aliases, secrets.
        options = pulumi.ResourceOptions.merge(_utilities.get_resource_opts_defaults(), opts)
        props: dict[str, Any] = {"apiVersion": kind.api_version, "kind": kind.kind}
        for name in kind.properties:
            value = properties.get(name)
            if value is None and name in kind.required and not options.urn:
                raise TypeError(f"Missing required property '{name}'")
            if value is not None and name in kind.secrets:
                value = pulumi.Output.secret(value)
            props[name] = value
        props.update(dict.fromkeys(kind.computed))
        if kind.aliases:
            aliases = [pulumi.Alias(type_=alias) for alias in kind.aliases]
            options = pulumi.ResourceOptions.merge(options, pulumi.ResourceOptions(aliases=aliases))
        if kind.secrets:
            options = pulumi.ResourceOptions.merge(
                options, pulumi.ResourceOptions(additional_secret_outputs=list(kind.secrets))
            )
        super().__init__(kind.token, resource_name, props, options)


_SPEC = ("metadata", "spec")
_STATUS = ("status",)


class Namespace(K8sObject):
    KIND = Kind("v1", "Namespace", _SPEC, _STATUS)


class ServiceAccount(K8sObject):
    KIND = Kind(
        "v1",
        "ServiceAccount",
        ("automountServiceAccountToken", "imagePullSecrets", "metadata", "secrets"),
    )


class ConfigMap(K8sObject):
    KIND = Kind("v1", "ConfigMap", ("binaryData", "data", "immutable", "metadata"))


class Secret(K8sObject):
    KIND = Kind(
        "v1",
        "Secret",
        ("data", "immutable", "metadata", "stringData", "type"),
        secrets=("data", "stringData"),
    )


class Service(K8sObject):
    KIND = Kind("v1", "Service", _SPEC, _STATUS)


class PersistentVolumeClaim(K8sObject):
    KIND = Kind("v1", "PersistentVolumeClaim", _SPEC, _STATUS)


class Deployment(K8sObject):
    KIND = Kind(
        "apps/v1",
        "Deployment",
        _SPEC,
        _STATUS,
        aliases=(
            "kubernetes:apps/v1beta1:Deployment",
            "kubernetes:apps/v1beta2:Deployment",
            "kubernetes:extensions/v1beta1:Deployment",
        ),
    )


class StatefulSet(K8sObject):
    KIND = Kind(
        "apps/v1",
        "StatefulSet",
        _SPEC,
        _STATUS,
        aliases=("kubernetes:apps/v1beta1:StatefulSet", "kubernetes:apps/v1beta2:StatefulSet"),
    )


class DaemonSet(K8sObject):
    KIND = Kind(
        "apps/v1",
        "DaemonSet",
        _SPEC,
        _STATUS,
        aliases=("kubernetes:apps/v1beta2:DaemonSet", "kubernetes:extensions/v1beta1:DaemonSet"),
    )


class NetworkPolicy(K8sObject):
    KIND = Kind(
        "networking.k8s.io/v1",
        "NetworkPolicy",
        _SPEC,
        _STATUS,
        aliases=("kubernetes:extensions/v1beta1:NetworkPolicy",),
    )


class Ingress(K8sObject):
    KIND = Kind(
        "networking.k8s.io/v1",
        "Ingress",
        _SPEC,
        _STATUS,
        aliases=(
            "kubernetes:extensions/v1beta1:Ingress",
            "kubernetes:networking.k8s.io/v1beta1:Ingress",
        ),
    )


class PodDisruptionBudget(K8sObject):
    KIND = Kind(
        "policy/v1",
        "PodDisruptionBudget",
        _SPEC,
        _STATUS,
        aliases=("kubernetes:policy/v1beta1:PodDisruptionBudget",),
    )


class HorizontalPodAutoscaler(K8sObject):
    KIND = Kind(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        _SPEC,
        _STATUS,
        aliases=(
            "kubernetes:autoscaling/v1:HorizontalPodAutoscaler",
            "kubernetes:autoscaling/v2beta1:HorizontalPodAutoscaler",
            "kubernetes:autoscaling/v2beta2:HorizontalPodAutoscaler",
        ),
    )


class ClusterRole(K8sObject):
    KIND = Kind(
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        ("aggregationRule", "metadata", "rules"),
        aliases=(
            "kubernetes:rbac.authorization.k8s.io/v1alpha1:ClusterRole",
            "kubernetes:rbac.authorization.k8s.io/v1beta1:ClusterRole",
        ),
    )


class ClusterRoleBinding(K8sObject):
    KIND = Kind(
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        ("metadata", "roleRef", "subjects"),
        required=("roleRef",),
        aliases=(
            "kubernetes:rbac.authorization.k8s.io/v1alpha1:ClusterRoleBinding",
            "kubernetes:rbac.authorization.k8s.io/v1beta1:ClusterRoleBinding",
        ),
    )
