// Command etcd is the etcd server v3.7 for Klaxon's tests: the proxy's
// go.etcd.io/etcd/v3 module (which holds the etcd command) stops at v3.6, so
// this tools module builds the same main from the v3.7 server module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
