"""The agent app's container image: built from `agent_app/Dockerfile` and pushed to
ECR in the AWS environments, or taken as configured where nothing is built (local)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Self

import pulumi
from pydantic import AfterValidator, Field, model_validator

from components.kube import child_options
from components.values import ArgsModel

REPO_ROOT = Path(__file__).resolve().parent.parent


def _not_latest(tag: str) -> str:
    if tag == "latest":
        raise ValueError("'latest' is mutable; pin a version tag")
    return tag


# A tag the registry keeps immutable (the repository is), so it names one image.
ImageTag = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$"), AfterValidator(_not_latest)
]


class AppImageArgs(ArgsModel):
    repository: str
    tag: ImageTag
    build: bool
    region: str | None = None
    context: Path = REPO_ROOT
    dockerfile: Path = REPO_ROOT / "agent_app" / "Dockerfile"

    @model_validator(mode="after")
    def _region_to_push_to(self) -> Self:
        if self.build and not self.region:
            raise ValueError("building pushes to ECR, which needs the region")
        return self


class AppImage(pulumi.ComponentResource):
    """`image_ref` is the pushed image by digest. Pods use `reference(tag)` instead: the
    repository's tags are immutable, so a tag is as exact as a digest, and unlike the
    digest it is known at preview, so a PR's preview shows (and the policy pack checks)
    the image the pods will run. Depend on this component to wait for the push."""

    image_ref: pulumi.Output[str]
    registry_repository: str

    def __init__(
        self, name: str, args: AppImageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("agent-platform:image:AppImage", name, None, opts)
        if not args.build:
            self.registry_repository = args.repository
            self.image_ref = pulumi.Output.from_input(self.reference(args.tag))
        else:
            # Imported here: only the AWS stacks build an image, and the AWS and docker
            # SDKs would cost every `pulumi preview` of the local stack their import time.
            import pulumi_aws as aws
            import pulumi_docker as docker

            child = child_options(self, opts)
            account = aws.get_caller_identity(opts=pulumi.InvokeOptions(parent=self)).account_id
            self.registry_repository = (
                f"{account}.dkr.ecr.{args.region}.amazonaws.com/{args.repository}"
            )
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
            self.image_ref = image.repo_digest
        self.register_outputs({"imageRef": self.image_ref})

    def reference(self, tag: str) -> str:
        return f"{self.registry_repository}:{tag}"
