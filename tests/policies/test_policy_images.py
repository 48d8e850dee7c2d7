from __future__ import annotations

import pytest
from policy_fixtures import only, patched, workload

from costing.view import UNKNOWN
from policies.rules.images import ImageConfig, check_image_pinned, split_image

IMAGE = "spec.template.spec.containers.0.image"
PROD = ImageConfig(require_immutable=True)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("redis:7.4.1-alpine3.20", ("redis", "7.4.1-alpine3.20", None)),
        ("localhost:5000/app", ("localhost:5000/app", None, None)),
        ("localhost:5000/app:1.0.0", ("localhost:5000/app", "1.0.0", None)),
        ("app@sha256:abc", ("app", None, "sha256:abc")),
        ("app", ("app", None, None)),
    ],
)
def test_split_image(image: str, expected: tuple[str, str | None, str | None]) -> None:
    assert split_image(image) == expected


def test_latest_tag() -> None:
    view = patched(workload(), IMAGE, "agent-platform/agent-app:latest")
    found = only(check_image_pinned(view, ImageConfig()))
    assert found.resource == "Deployment 'agent-api'"
    assert found.message == (
        "Deployment 'agent-api': container 'api': spec.template.spec.containers[0].image "
        "'agent-platform/agent-app:latest' uses the mutable tag 'latest'; pin a version tag or "
        "digest."
    )


def test_untagged_image() -> None:
    view = patched(workload(), IMAGE, "agent-platform/agent-app")
    found = only(check_image_pinned(view, ImageConfig()))
    assert found.message == (
        "Deployment 'agent-api': container 'api': spec.template.spec.containers[0].image "
        "'agent-platform/agent-app' has no tag (it means latest); pin a version tag or digest."
    )


def test_floating_tag_passes_by_default_but_not_where_immutability_is_required() -> None:
    view = patched(workload(), IMAGE, "redis:7")
    assert check_image_pinned(view, ImageConfig()) == []
    found = only(check_image_pinned(view, PROD))
    assert found.message == (
        "Deployment 'agent-api': container 'api': spec.template.spec.containers[0].image "
        "'redis:7' is neither a digest nor an immutable tag; pin @sha256:... or a full version "
        "tag matching immutable_tag_pattern."
    )


@pytest.mark.parametrize(
    "image",
    ["agent-platform/agent-app:1.4.0", "vllm/vllm-openai:v0.6.4", f"app@sha256:{'a' * 64}"],
)
def test_immutable_references_pass_in_prod(image: str) -> None:
    assert check_image_pinned(patched(workload(), IMAGE, image), PROD) == []


def test_unknown_image_fails_where_immutability_is_required() -> None:
    view = patched(workload(), IMAGE, UNKNOWN)
    found = only(check_image_pinned(view, PROD))
    assert found.message == (
        "Deployment 'agent-api': container 'api': spec.template.spec.containers[0].image is "
        "unknown at preview, so it cannot be shown to be immutable; reference a digest or "
        "version tag known before deployment."
    )


def test_unknown_image_is_undecided_elsewhere() -> None:
    [note] = check_image_pinned(patched(workload(), IMAGE, UNKNOWN), ImageConfig())
    assert note.undetermined
    assert note.resource == "Deployment 'agent-api'"
