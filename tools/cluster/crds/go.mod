// Wrapper module that pins the operators whose CustomResourceDefinitions
// scripts/local-cluster installs into the local control plane, read from each module's
// own files: KEDA, External Secrets and Karpenter at the app versions of the Helm charts
// the stacks pin (components/operators.py, components/karpenter.py), Envoy Gateway's own
// (EnvoyProxy and its policies) at the chart version the stacks pin, and the Gateway
// API's standard channel at the version that Envoy Gateway release is built against,
// cert-manager's (deploy/crds: plain YAML, the set its chart installs with crds.enabled)
// and Flagger's (Canary, MetricTemplate, AlertProvider) at the chart versions the stacks
// pin.
// Karpenter's are the AWS provider's (NodePool, NodeClaim, NodeOverlay and
// EC2NodeClass), the set its chart installs: its NodePool is the core
// one (sigs.k8s.io/karpenter, the version it requires) plus the AWS label rules. Nothing
// here is built; go.sum pins each module's contents.
module agentplatform.local/tools/cluster/crds

go 1.26.5

require (
	github.com/aws/karpenter-provider-aws v1.13.1
	github.com/cert-manager/cert-manager v1.21.2
	github.com/envoyproxy/gateway v1.7.0
	github.com/external-secrets/external-secrets v0.10.5
	github.com/kedacore/keda/v2 v2.16.0
	github.com/fluxcd/flagger v1.36.1
	sigs.k8s.io/gateway-api v1.4.1
)
