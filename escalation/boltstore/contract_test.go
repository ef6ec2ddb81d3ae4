package boltstore_test

import (
	"testing"

	"github.com/klaxon-oncall/klaxon/escalation"
	"github.com/klaxon-oncall/klaxon/escalation/boltstore"
	"github.com/klaxon-oncall/klaxon/escalation/storetest"
)

// TestContract runs the Store contract every implementation keeps.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) escalation.Store {
		s, err := boltstore.Open(t.TempDir(), boltstore.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		return s
	})
}
