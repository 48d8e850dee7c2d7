"""How another team consumes agent-platform: through its stack outputs, never its state.

Run it beside the platform: `pulumi config set platformStack organization/agent-platform/local`
and `pulumi up`.
"""

import pulumi

platform = pulumi.StackReference(pulumi.Config().require("platformStack"))

endpoint = platform.require_output("agentApiEndpoint")
canary = platform.require_output("canary")
cost = platform.require_output("estimatedMonthlyCost")

pulumi.export("agentApi", endpoint)
pulumi.export("tasksUrl", pulumi.Output.concat(endpoint, "/v1/tasks"))
pulumi.export("canaryWeight", canary.apply(lambda c: c["weight"]))
pulumi.export("platformBudgetUsd", cost.apply(lambda c: c["worstCaseUsd"]))
# A secret output stays a secret on the consumer's side too.
pulumi.export("kubeconfig", platform.require_output("kubeconfig"))
