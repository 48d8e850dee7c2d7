"""AppImage: built and pushed to an immutable ECR repository, or the configured tag."""

from __future__ import annotations

import pytest
from component_mocks import evaluate

from components.app_image import AppImage, AppImageArgs

IMAGE = "agent-platform:image:AppImage"


def test_without_a_build_the_image_is_the_configured_tag() -> None:
    args = AppImageArgs(repository="agent-platform/agent-app", tag="0.1.0", build=False)
    image, graph = evaluate(lambda: AppImage("agent-app", args))
    component = graph.component(IMAGE)
    assert graph.children(component) == []
    assert image.reference("0.2.0") == "agent-platform/agent-app:0.2.0"
    assert graph.outputs_of(component) == {"imageRef": "agent-platform/agent-app:0.1.0"}


def test_a_build_pushes_to_an_immutable_scanned_repository() -> None:
    args = AppImageArgs(
        repository="agent-platform/agent-app", tag="0.1.0", build=True, region="us-east-1"
    )
    image, graph = evaluate(lambda: AppImage("agent-app", args))
    component = graph.component(IMAGE)
    assert graph.kinds(component) == [
        ("aws:ecr/lifecyclePolicy:LifecyclePolicy", "agent-app-retention"),
        ("aws:ecr/repository:Repository", "agent-app-repo"),
        ("docker:index/image:Image", "agent-app-image"),
    ]
    repository = graph.named("aws:ecr/repository:Repository", "agent-app-repo").inputs
    assert repository["imageTagMutability"] == "IMMUTABLE"
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}
    registry = "123456789012.dkr.ecr.us-east-1.amazonaws.com/agent-platform/agent-app"
    assert image.reference("0.1.0") == f"{registry}:0.1.0"
    assert graph.outputs_of(component)["imageRef"].startswith(f"{registry}:0.1.0@sha256:")


def test_the_tag_is_immutable_and_a_build_needs_a_region() -> None:
    with pytest.raises(ValueError, match="'latest' is mutable; pin a version tag"):
        AppImageArgs(repository="r", tag="latest", build=False)
    with pytest.raises(ValueError, match="building pushes to ECR, which needs the region"):
        AppImageArgs(repository="r", tag="0.1.0", build=True)
