// Command kftenant-testenv is the real local stack for kftenant's integration
// tests: one binary that runs a real etcd, a real kube-apiserver or kubectl,
// chosen by its first argument.
//
//	kftenant-testenv etcd [etcd flags]
//	kftenant-testenv kube-apiserver [kube-apiserver flags]
//	kftenant-testenv kubectl [kubectl args]
//	kftenant-testenv version
//
// Nothing here is a fake: each subcommand is the upstream entry point.
package main

import (
	"fmt"
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: kftenant-testenv etcd|kube-apiserver|kubectl|version [args...]")
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	sub := os.Args[1]
	// Each upstream entry point parses os.Args itself (etcd) or os.Args[1:]
	// (cobra), so drop the subcommand word and keep argv[0].
	os.Args = append([]string{os.Args[0]}, os.Args[2:]...)
	switch sub {
	case "etcd":
		etcdmain.Main(os.Args)
	case "kube-apiserver":
		os.Exit(cli.Run(app.NewAPIServerCommand()))
	case "kubectl":
		os.Exit(cli.Run(kubectlcmd.NewDefaultKubectlCommand()))
	case "version":
		fmt.Println(version())
	default:
		usage()
		os.Exit(2)
	}
}
