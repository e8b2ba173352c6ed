package eachhook_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
)

// One Handler serves every form the sender uses: predictions in the spec
// page's form and in the exec_id form, and workflow executions.
func ExampleHandler_OnWorkflowCompleted() {
	h, err := eachhook.New(
		eachhook.WithSecret("whsec_example"),
		eachhook.WithWorkers(1), // one worker: callbacks run in arrival order
		eachhook.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		panic(err)
	}
	h.OnSuccess(func(ctx context.Context, s *eachhook.Success) error {
		fmt.Println("prediction", s.ID, "succeeded")
		return nil
	})
	h.OnFailed(func(ctx context.Context, f *eachhook.Failure) error {
		fmt.Printf("prediction %s failed: %s (%s)\n", f.ID, f.Logs, f.Code)
		return nil
	})
	h.OnWorkflowCompleted(func(ctx context.Context, run *eachhook.WorkflowRun) error {
		fmt.Println("workflow", run.WorkflowID, "execution", run.ExecutionID, "completed")
		return nil
	})

	for _, body := range [][]byte{
		eachhooktest.SuccessBody("p1"),
		eachhooktest.SucceededBody("p2"),
		eachhooktest.ExecFailedBody("p3", "EXECUTION_TIMEOUT", "Execution timed out after 300 seconds"),
		eachhooktest.WorkflowCompletedBody("x1", "wf-upscale"),
		eachhooktest.WorkflowCompletedBody("x1", "wf-upscale"), // a duplicate
	} {
		r := eachhooktest.NewRequest("/webhook", "whsec_example", body, eachhooktest.TimestampScheme, time.Now())
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		fmt.Println(w.Code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		panic(err)
	}
	// Unordered output:
	// 200
	// 200
	// 200
	// 200
	// 200
	// prediction p1 succeeded
	// prediction p2 succeeded
	// prediction p3 failed: Execution timed out after 300 seconds (EXECUTION_TIMEOUT)
	// workflow wf-upscale execution x1 completed
}
