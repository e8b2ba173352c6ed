package redisstore_test

import (
	"context"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/redisstore"
	"github.com/redis/go-redis/v9"
)

// Every replica creates its own Store on the same Redis, with the same
// key prefix, and hands it to its Handler. (Not run: it needs a server.)
func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	store, err := redisstore.New(rdb, redisstore.WithKeyPrefix("myapp:eachhook:"))
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

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

	// ... at exit: stop the server, drain the Handler, then close the store.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	h.Shutdown(ctx)
}
