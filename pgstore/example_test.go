package pgstore_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/pgstore"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Every replica creates its own Store on the same database and table, runs
// Migrate at start, and hands the store to its Handler. (Not run: it needs
// a server.)
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	store, err := pgstore.New(pool)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}

	h, err := eachhook.New(eachhook.WithSecret(os.Getenv("EACHHOOK_SECRET")), eachhook.WithStore(store))
	if err != nil {
		log.Fatal(err)
	}
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		log.Printf("prediction %s succeeded", s.ID)
		return nil
	})
	srv := &http.Server{Addr: ":8080", Handler: h}
	go srv.ListenAndServe()

	// ... at exit: stop the server, drain the Handler, then close the store
	// and the pool.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	h.Shutdown(ctx)
}
