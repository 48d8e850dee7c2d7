//go:build tools

// Package tools records the main package this module exists to build: the server
// module's root package is etcd's main.
package tools

import _ "go.etcd.io/etcd/server/v3"
