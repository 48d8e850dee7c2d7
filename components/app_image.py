"""The agent app's container image: built from `agent_app/Dockerfile` and pushed to
ECR in the AWS environments, or taken as configured where nothing is built (local)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi
import pulumi_aws as aws
import pulumi_docker as docker

from components.kube import child_options

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class AppImageArgs:
    repository: str
    tag: str
    build: bool
    context: Path = REPO_ROOT
    dockerfile: Path = REPO_ROOT / "agent_app" / "Dockerfile"

    def __post_init__(self) -> None:
        if self.tag == "latest" or not self.tag:
            raise ValueError("the image tag must be an immutable version, not 'latest'")


class AppImage(pulumi.ComponentResource):
    """`image_ref` is a digest reference when the image is built, so pods run exactly
    the bytes that were pushed. `reference(tag)` names another, earlier pushed, tag of
    the same repository (ECR tags are immutable here, so a tag is as exact as a digest)."""

    image_ref: pulumi.Output[str]
    repository_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: AppImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:image:AppImage", name, None, opts)
        if not args.build:
            self.repository_url = pulumi.Output.from_input(args.repository)
            self.image_ref = pulumi.Output.from_input(f"{args.repository}:{args.tag}")
        else:
            child = child_options(self, opts)
            repository = aws.ecr.Repository(
                f"{name}-repo",
                name=args.repository,
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=[{"encryption_type": "KMS"}],
                force_delete=False,
                opts=child,
            )
            aws.ecr.LifecyclePolicy(
                f"{name}-retention",
                repository=repository.name,
                policy=(
                    '{"rules":[{"rulePriority":1,"description":"keep the last 50 images",'
                    '"selection":{"tagStatus":"any","countType":"imageCountMoreThan","countNumber":50},'
                    '"action":{"type":"expire"}}]}'
                ),
                opts=child,
            )
            token = aws.ecr.get_authorization_token_output(
                registry_id=repository.registry_id, opts=pulumi.InvokeOptions(parent=self)
            )
            image = docker.Image(
                f"{name}-image",
                image_name=pulumi.Output.concat(repository.repository_url, ":", args.tag),
                build={
                    "context": str(args.context),
                    "dockerfile": str(args.dockerfile),
                    "platform": "linux/amd64",
                },
                registry={
                    "server": repository.repository_url,
                    "username": token.user_name,
                    "password": pulumi.Output.secret(token.password),
                },
                opts=child,
            )
            self.repository_url = repository.repository_url
            self.image_ref = image.repo_digest
        self.register_outputs({"imageRef": self.image_ref, "repositoryUrl": self.repository_url})

    def reference(self, tag: str) -> pulumi.Output[str]:
        return pulumi.Output.concat(self.repository_url, ":", tag)
