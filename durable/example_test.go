package durable_test

import (
	"context"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhooktest"
)

func ExampleOpenSQLite() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "eachhook-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	q, err := durable.OpenSQLite(ctx, filepath.Join(dir, "webhooks.db"), durable.Config{})
	if err != nil {
		log.Fatal(err)
	}
	h, err := eachhook.New(eachhook.WithSecret("whsec_example"), eachhook.WithQueue(q))
	if err != nil {
		log.Fatal(err)
	}
	urls := make(chan string, 1)
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		url, err := s.URL()
		if err != nil {
			return err
		}
		urls <- s.ID + " " + url
		return nil
	})
	// Start after registering the callbacks: deliveries a crashed process
	// left in webhooks.db run now.
	if err := h.Start(ctx); err != nil {
		log.Fatal(err)
	}

	w := httptest.NewRecorder()
	h.ServeHTTP(w, eachhooktest.NewSuccessRequest("/", "whsec_example", "pred_123"))
	fmt.Println("answered", w.Code, "after the insert committed")
	fmt.Println("callback ran for", <-urls)
	if err := h.Shutdown(ctx); err != nil {
		log.Fatal(err)
	}
	// Output:
	// answered 200 after the insert committed
	// callback ran for pred_123 https://storage.example.com/predictions/abc123/image.jpg
}
