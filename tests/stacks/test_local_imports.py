"""The local stack needs no cloud SDK: the AWS and Docker providers are imported only
where dev and prod use them, so that `pulumi preview` of the local stack never pays for
their imports (a tenth of a second each, in every run)."""

from __future__ import annotations

import subprocess
import sys

from stacks.simulate import REPO_ROOT


def test_the_local_stack_imports_no_aws_or_docker_sdk() -> None:
    # A fresh interpreter, as the engine's language host is: the test session has them all.
    script = (
        "import sys\n"
        "from stacks.simulate import simulate\n"
        "simulate('local')\n"
        "print(sorted(m for m in sys.modules if m.startswith(('pulumi_aws', 'pulumi_docker'))))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert loaded == "[]"
