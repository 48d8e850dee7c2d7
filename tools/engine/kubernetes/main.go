// Command pulumi-resource-kubernetes serves the Kubernetes resource provider.
//
// Upstream's main package embeds JSON files that are generated at release time
// and are not part of the Go module, so it cannot be built from the module
// alone. scripts/pulumi-engine copies this file into a build directory outside
// the repository, generates schema-embed.json (the module's committed
// schema.json with the pinned version stamped in) and
// terraform-mapping-embed.json next to it, and builds it there. Nothing
// generated is committed.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var schemaJSON []byte

//go:embed terraform-mapping-embed.json
var terraformMappingJSON []byte

func main() {
	provider.Serve("kubernetes", version.Version, schemaJSON, terraformMappingJSON)
}
