// Command etcd is the etcd server, built at the version k8s.io/kubernetes
// resolves, for the test harness in internal/testserver.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
