// Wrapper module that pins the operators whose CustomResourceDefinitions
// scripts/local-cluster installs into the local control plane, read from each module's
// own files: KEDA and External Secrets at the app versions of the Helm charts the stacks
// pin (components/operators.py), and the Gateway API's standard channel. Nothing here is
// built; go.sum pins each module's contents.
module agentplatform.local/tools/cluster/crds

go 1.26.0

require (
	github.com/external-secrets/external-secrets v0.10.5
	github.com/kedacore/keda/v2 v2.16.0
	sigs.k8s.io/gateway-api v1.4.0
)
