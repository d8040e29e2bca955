package main

import (
	"runtime/debug"
	"strings"
)

// version reports the module versions this binary was built from, so a
// cached binary can be checked against go.mod.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	var b strings.Builder
	for _, d := range info.Deps {
		switch d.Path {
		case "k8s.io/kubernetes", "go.etcd.io/etcd/server/v3", "k8s.io/kubectl":
			v := d.Version
			if d.Replace != nil {
				v = d.Replace.Version
			}
			b.WriteString(d.Path + " " + v + "\n")
		}
	}
	return strings.TrimSpace(b.String())
}
