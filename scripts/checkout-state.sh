# Sourced by scripts/pulumi-local and scripts/local-cluster: the state directory of this
# checkout. Each clone of the repo has its own local stack and local cluster, under
#   ${AGENT_PLATFORM_STATE:-${XDG_STATE_HOME:-~/.local/state}/agent-platform/<checkout>-<hash of its path>}
# because what they manage (build/, the cluster's objects) belongs to one checkout.
# Sets STATE_ROOT (the machine's) and CHECKOUT_STATE (this checkout's); needs REPO.
STATE_ROOT="${XDG_STATE_HOME:-$HOME/.local/state}/agent-platform"
if [ -n "${AGENT_PLATFORM_STATE:-}" ]; then
  CHECKOUT_STATE="$AGENT_PLATFORM_STATE"
else
  CHECKOUT_STATE="$STATE_ROOT/$(basename "$REPO")-$(printf '%s' "$REPO" | sha256sum | cut -c1-12)"
fi
