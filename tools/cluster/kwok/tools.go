//go:build tools

// Package tools records the main package this module exists to build.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
