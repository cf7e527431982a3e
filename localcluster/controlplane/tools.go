//go:build tools

// Package tools pins the kube-apiserver and kubectl commands into this module's dependency graph,
// so `go build k8s.io/kubernetes/cmd/...` finds every package they need in go.sum.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver/app"
	_ "k8s.io/kubectl/pkg/cmd"
)
