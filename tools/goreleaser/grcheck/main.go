// Command grcheck checks a goreleaser v2 configuration the way goreleaser
// loads it, without building goreleaser (the heaviest build of all Klaxon's
// tools): the file must declare `version: 2` and decode strictly (no unknown
// fields, right value types) into goreleaser's own config.Project.
//
//	grcheck .goreleaser.yaml
//
// `goreleaser check` does more (its defaults and deprecation notices); run it
// before a release.
package main

import (
	"fmt"
	"os"

	"github.com/goreleaser/goreleaser/v2/pkg/config"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: grcheck FILE")
		os.Exit(2)
	}
	if err := check(os.Args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	fmt.Printf("%s: valid goreleaser v2 configuration\n", os.Args[1])
}

func check(file string) error {
	p, err := config.Load(file)
	if err != nil {
		return err
	}
	if p.Version != 2 {
		return fmt.Errorf("version: %d; goreleaser v2 needs version: 2", p.Version)
	}
	return nil
}
