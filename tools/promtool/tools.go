//go:build tools

// Package tools records the main package this module exists to build.
package tools

import _ "github.com/prometheus/prometheus/cmd/promtool"
