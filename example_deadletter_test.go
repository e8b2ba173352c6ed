package eachhook_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"sync/atomic"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
)

// A callback that fails on every attempt leaves a dead letter; once the
// cause is fixed, Replay runs it again and the dead letter is gone.
func ExampleHandler_Replay() {
	gaveUp := make(chan error, 1)
	h, err := eachhook.New(eachhook.WithSecret("whsec_example"), eachhook.WithRetry(2, 0),
		eachhook.WithLogger(slog.New(slog.DiscardHandler)),
		// Called once the dead letter is stored.
		eachhook.WithErrorHandler(func(ctx context.Context, err error) { gaveUp <- err }))
	if err != nil {
		panic(err)
	}
	var fixed atomic.Bool
	ran := make(chan error, 10)
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		err := error(nil)
		if !fixed.Load() {
			err = errors.New("storage bucket unreachable")
		}
		ran <- err
		return err
	})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, eachhooktest.NewSuccessRequest("/", "whsec_example", "abc123"))
	fmt.Println("answered", w.Code)
	<-gaveUp // both attempts failed

	ctx := context.Background()
	list, err := h.DeadLetters(ctx)
	if err != nil {
		panic(err)
	}
	dl := list[0]
	fmt.Printf("dead letter %s: %s after %d attempts: %s\n", dl.ID, dl.Reason, dl.Attempts, dl.Err)

	fixed.Store(true)
	if err := h.Replay(ctx, dl.ID); err != nil {
		panic(err)
	}
	<-ran
	<-ran
	fmt.Println("replayed:", <-ran)
	if err := h.Shutdown(ctx); err != nil { // waits for the replay's callback
		panic(err)
	}
	list, _ = h.DeadLetters(ctx)
	fmt.Println("dead letters left:", len(list))
	fmt.Println(errors.Is(h.Replay(ctx, dl.ID), eachhook.ErrNoDeadLetter))
	// Output:
	// answered 200
	// dead letter abc123: callback_failed after 2 attempts: storage bucket unreachable
	// replayed: <nil>
	// dead letters left: 0
	// true
}
