from __future__ import annotations

import pytest
from policy_fixtures import container, only, patched, pod_spec, workload

from costing.view import UNKNOWN
from policies.rules.images import (
    ImageConfig,
    ThirdPartyDigestConfig,
    check_image_pinned,
    check_third_party_digest,
    split_image,
)

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


DIGEST = "sha256:" + "0123456789abcdef" * 4
THIRD_PARTY = ThirdPartyDigestConfig()


def test_a_third_party_image_by_tag_is_not_pinned_by_digest() -> None:
    view = patched(workload(), IMAGE, "vllm/vllm-openai:v0.34.0")
    found = only(check_third_party_digest(view, THIRD_PARTY))
    assert found.rule == "third-party-image-digest"
    assert found.message == (
        "Deployment 'agent-api': container 'api': spec.template.spec.containers[0].image "
        "'vllm/vllm-openai:v0.34.0' is a third-party image not pinned by digest; configure it "
        "as '<repository>:<tag>@sha256:<64 hex digits>' (the README's config reference names "
        "each image's key)."
    )


@pytest.mark.parametrize(
    "image",
    [
        "vllm/vllm-openai:v0.34.0@sha256:abc",  # a digest, but cut short
        f"vllm/vllm-openai:v0.34.0@sha512:{'a' * 128}",
        f"vllm/vllm-openai@sha256:{'A' * 64}",  # digests are lower-case hex
    ],
)
def test_only_a_whole_sha256_digest_pins(image: str) -> None:
    assert only(check_third_party_digest(patched(workload(), IMAGE, image), THIRD_PARTY))


@pytest.mark.parametrize(
    "image",
    [
        f"vllm/vllm-openai:v0.34.0@{DIGEST}",
        f"nvcr.io/nvidia/k8s/dcgm-exporter@{DIGEST}",
        f"localhost:5000/redis:7.4.1@{DIGEST}",
    ],
)
def test_a_third_party_image_by_digest_passes(image: str) -> None:
    assert check_third_party_digest(patched(workload(), IMAGE, image), THIRD_PARTY) == []


@pytest.mark.parametrize(
    "image",
    [
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/agent-platform/agent-app:1.4.0",
        "agent-platform/agent-app:dev",
    ],
)
def test_the_projects_own_image_needs_no_digest(image: str) -> None:
    assert check_third_party_digest(patched(workload(), IMAGE, image), THIRD_PARTY) == []
    # ...unless it is not listed as the project's own.
    none_own = ThirdPartyDigestConfig(first_party_repositories=())
    assert only(check_third_party_digest(patched(workload(), IMAGE, image), none_own))


def test_every_container_is_checked_init_containers_too() -> None:
    spec = {
        **pod_spec(container("api", f"redis:7.4.1@{DIGEST}")),
        "initContainers": [container("fetch", "vllm/vllm-openai:v0.34.0")],
    }
    view = workload(spec=spec)
    found = only(check_third_party_digest(view, THIRD_PARTY))
    assert "init container 'fetch'" in found.message


def test_an_unknown_image_is_undecided() -> None:
    [note] = check_third_party_digest(patched(workload(), IMAGE, UNKNOWN), THIRD_PARTY)
    assert note.undetermined
