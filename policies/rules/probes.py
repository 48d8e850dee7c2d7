"""Long-running containers have distinct liveness and readiness probes."""

from __future__ import annotations

from costing.view import UNKNOWN, ResourceView, dig, name_matches
from policies.rule import ResourceRule, Rule, RuleConfig
from policies.violation import Violation, undetermined, violation
from policies.workloads import LONG_RUNNING, containers, containers_unknown

PROBES = "probes-configured"


class ProbesConfig(RuleConfig):
    exempt_workloads: tuple[str, ...] = ()


def check_probes(resource: ResourceView, cfg: ProbesConfig) -> list[Violation]:
    # Jobs run to completion: a liveness probe would only kill a slow batch step.
    if resource.type not in LONG_RUNNING or name_matches(
        resource.display_name, cfg.exempt_workloads
    ):
        return []
    if containers_unknown(resource):
        return [undetermined(PROBES, resource, "containers unknown at preview.")]
    found: list[Violation] = []
    for container in containers(resource, include_init=False):
        liveness = dig(container.spec, "livenessProbe")
        readiness = dig(container.spec, "readinessProbe")
        if liveness is UNKNOWN or readiness is UNKNOWN:
            found.append(undetermined(PROBES, resource, f"{container.label}: probes unknown."))
            continue
        missing = [
            name
            for name, probe in (("livenessProbe", liveness), ("readinessProbe", readiness))
            if not probe
        ]
        if missing:
            found.append(
                violation(
                    PROBES,
                    resource,
                    f"{container.label} has no "
                    f"{' or '.join(f'{container.path}.{m}' for m in missing)}; add "
                    "a readiness probe that checks dependencies and a liveness probe that "
                    "only checks the process.",
                )
            )
        elif liveness == readiness:
            found.append(
                violation(
                    PROBES,
                    resource,
                    f"{container.label}: {container.path}.livenessProbe is identical to "
                    "readinessProbe, so a slow dependency restarts the pod; point liveness at "
                    "a process-only endpoint or give it a longer failureThreshold.",
                )
            )
    return found


RULES: list[Rule] = [
    ResourceRule(
        PROBES,
        "Long-running containers have liveness and readiness probes that are not identical.",
        "mandatory",
        ProbesConfig,
        check_probes,
        "Unknown probes are skipped with an advisory note.",
    ),
]
