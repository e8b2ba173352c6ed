package eachhook_test

import (
	"testing"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/storetest"
)

func TestMemoryStoreConformance(t *testing.T) {
	storetest.Run(t, storetest.Harness{New: func(t *testing.T) eachhook.Store {
		s := eachhook.NewMemoryStore()
		t.Cleanup(func() { s.Close() })
		return s
	}})
}
