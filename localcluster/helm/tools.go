//go:build tools

// Package tools pins the Helm CLI as a dependency of this module so that go.sum covers everything
// `go build helm.sh/helm/v3/cmd/helm` needs.
package tools

import _ "helm.sh/helm/v3/cmd/helm"
