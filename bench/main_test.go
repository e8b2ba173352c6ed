package bench

import (
	"testing"

	"go.uber.org/goleak"
)

// benchSecret is the webhook secret of every benchmark.
const benchSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
