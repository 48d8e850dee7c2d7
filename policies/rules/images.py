"""Container images: never `latest` or untagged; immutable references where required;
third-party images pinned by digest where required."""

from __future__ import annotations

import re
from typing import Any

from pydantic import StrictBool

from costing.view import UNKNOWN, ResourceView, dig
from policies.rule import Pattern, ResourceRule, Rule, RuleConfig
from policies.violation import Violation, undetermined, violation
from policies.workloads import containers, containers_unknown, is_pod_bearing

IMAGE_PINNED = "image-pinned"
THIRD_PARTY_DIGEST = "third-party-image-digest"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class ImageConfig(RuleConfig):
    require_immutable: StrictBool = False
    # Full versions (1.4.0, v0.6.4, 7.4.1-alpine3.20) and commit SHAs are never moved by
    # convention; floating tags (7, 7.4, stable, main) are.
    immutable_tag_pattern: Pattern = (
        r"^(v?\d+\.\d+\.\d+([-+.][0-9A-Za-z.-]+)?|(sha-)?[0-9a-f]{7,40})$"
    )


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """`repo[:tag][@digest]` -> (repo, tag, digest); a registry port is not a tag."""
    repository, _, digest = image.partition("@")
    name, _, tag = repository.rpartition(":")
    if not name or "/" in tag:
        return repository, None, digest or None
    return name, tag, digest or None


def check_image_pinned(resource: ResourceView, cfg: ImageConfig) -> list[Violation]:
    if not is_pod_bearing(resource):
        return []
    if containers_unknown(resource):
        return [undetermined(IMAGE_PINNED, resource, "containers unknown at preview.")]
    found: list[Violation] = []
    for container in containers(resource):
        image: Any = dig(container.spec, "image")
        path = f"{container.path}.image"
        if image is UNKNOWN:
            message = f"{container.label}: {path} is unknown at preview"
            if cfg.require_immutable:
                found.append(
                    violation(
                        IMAGE_PINNED,
                        resource,
                        f"{message}, so it cannot be shown to be immutable; reference a "
                        "digest or version tag known before deployment.",
                    )
                )
            else:
                found.append(undetermined(IMAGE_PINNED, resource, f"{message}."))
            continue
        if not isinstance(image, str) or not image:
            found.append(
                violation(
                    IMAGE_PINNED,
                    resource,
                    f"{container.label} has no {path}; set an image with a pinned tag.",
                )
            )
            continue
        _, tag, digest = split_image(image)
        if digest is None and tag is None:
            found.append(
                violation(
                    IMAGE_PINNED,
                    resource,
                    f"{container.label}: {path} '{image}' has no tag (it means latest); "
                    "pin a version tag or digest.",
                )
            )
        elif tag == "latest" and digest is None:
            found.append(
                violation(
                    IMAGE_PINNED,
                    resource,
                    f"{container.label}: {path} '{image}' uses the mutable tag 'latest'; "
                    "pin a version tag or digest.",
                )
            )
        elif (
            cfg.require_immutable
            and digest is None
            and not re.match(cfg.immutable_tag_pattern, tag or "")
        ):
            found.append(
                violation(
                    IMAGE_PINNED,
                    resource,
                    f"{container.label}: {path} '{image}' is neither a digest nor an immutable "
                    "tag; pin @sha256:... or a full version tag matching "
                    "immutable_tag_pattern.",
                )
            )
    return found


class ThirdPartyDigestConfig(RuleConfig):
    # The repositories of the images the project builds (components/app_image.py): the
    # stack's own registry keeps their tags immutable, so a tag names one image there.
    first_party_repositories: tuple[Pattern, ...] = (r"(^|/)agent-platform/agent-app$",)


def check_third_party_digest(
    resource: ResourceView, cfg: ThirdPartyDigestConfig
) -> list[Violation]:
    if not is_pod_bearing(resource):
        return []
    if containers_unknown(resource):
        return [undetermined(THIRD_PARTY_DIGEST, resource, "containers unknown at preview.")]
    found: list[Violation] = []
    for container in containers(resource):
        image: Any = dig(container.spec, "image")
        path = f"{container.path}.image"
        if image is UNKNOWN:
            message = f"{container.label}: {path} is unknown at preview."
            found.append(undetermined(THIRD_PARTY_DIGEST, resource, message))
            continue
        if not isinstance(image, str) or not image:
            continue  # image-pinned reports a missing image
        repository, _, digest = split_image(image)
        if any(re.search(pattern, repository) for pattern in cfg.first_party_repositories):
            continue
        if digest is None or not DIGEST.match(digest):
            found.append(
                violation(
                    THIRD_PARTY_DIGEST,
                    resource,
                    f"{container.label}: {path} '{image}' is a third-party image not pinned "
                    "by digest; configure it as '<repository>:<tag>@sha256:<64 hex digits>' "
                    "(the README's config reference names each image's key).",
                )
            )
    return found


RULES: list[Rule] = [
    ResourceRule(
        IMAGE_PINNED,
        "Images carry a tag other than latest; where required, a digest or immutable tag.",
        "mandatory",
        ImageConfig,
        check_image_pinned,
        "An unknown image fails when require_immutable is set (prod); otherwise it is "
        "skipped with an advisory note.",
    ),
    ResourceRule(
        THIRD_PARTY_DIGEST,
        "Images the project does not build are pinned by digest (@sha256:...).",
        "advisory",
        ThirdPartyDigestConfig,
        check_third_party_digest,
        "An unknown image is skipped with an advisory note.",
    ),
]
