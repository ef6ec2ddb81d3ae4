package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/escalation/etcdstore"
)

// runMigrate copies a single-node bolt store into etcd:
//
//	klaxon migrate --from bolt://./data --to etcd://10.0.0.1:2379,10.0.0.2:2379/klaxon/
//
// The bolt file is opened read-only (stop klaxon serve first: it holds the
// lock). The etcd prefix must be empty. TLS and credentials come from the
// same flags and environment as `klaxon serve --store etcd`.
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("klaxon migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	env := map[string]string{}
	from := fs.String("from", "", "source: bolt://DATA-DIRECTORY")
	to := fs.String("to", "", "target: etcd://HOST:PORT[,HOST:PORT...]/PREFIX/")
	var ec etcdConfig
	ec.declare(fs, env)
	if err := fs.Parse(args); err != nil {
		return exitFlag(err)
	}
	if err := envFlags(fs, env); err != nil {
		fmt.Fprintln(stderr, "klaxon migrate:", err)
		return 2
	}
	dir, ok := strings.CutPrefix(*from, "bolt://")
	if !ok || dir == "" {
		fmt.Fprintln(stderr, "klaxon migrate: --from must be bolt://DATA-DIRECTORY")
		return 2
	}
	u, err := url.Parse(*to)
	if err != nil || u.Scheme != "etcd" || u.Host == "" {
		fmt.Fprintln(stderr, "klaxon migrate: --to must be etcd://HOST:PORT[,HOST:PORT...]/PREFIX/")
		return 2
	}
	scheme := "http://"
	if ec.caFile != "" || ec.certFile != "" {
		scheme = "https://"
	}
	var eps []string
	for _, h := range strings.Split(u.Host, ",") {
		eps = append(eps, scheme+h)
	}
	ec.endpoints = strings.Join(eps, ",")
	if u.Path != "" && u.Path != "/" {
		ec.prefix = u.Path
	}
	if err := ec.resolve("migrate"); err != nil {
		fmt.Fprintln(stderr, "klaxon migrate:", err)
		return 2
	}
	if err := migrate(ctx, dir, &ec, stdout); err != nil {
		fmt.Fprintln(stderr, "klaxon migrate:", err)
		return 1
	}
	return 0
}

func migrate(ctx context.Context, dir string, ec *etcdConfig, stdout io.Writer) error {
	src, err := boltstore.Open(dir, boltstore.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer src.Close()
	cli, err := ec.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	dst := etcdstore.New(cli, etcdstore.Options{Prefix: ec.prefix, Writer: "migrate"})
	im, err := dst.Importer(ctx)
	if err != nil {
		return err
	}
	if err := src.Export(ctx, im); err != nil {
		return fmt.Errorf("copying (the prefix %s now holds a partial copy: delete it before trying again): %w", ec.prefix, err)
	}
	fmt.Fprintf(stdout, "copied %d incidents, %d Alertmanager groups and %d channel state keys from %s into etcd under %s\n",
		im.Incidents, im.Groups, im.States, dir, ec.prefix)
	return nil
}
