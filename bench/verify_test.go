//go:build peers

// The comparison with peer libraries is behind the "peers" build tag, so
// that the repository's test script does not download them: run.sh and
// .ci/run pass -tags peers.

package bench

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/eachhook/eachhook/signature"
	"github.com/google/go-github/v89/github"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v82/webhook"
	svix "github.com/svix/svix-webhooks/go"
)

// verifySizes are the body sizes of BenchmarkVerify.
var verifySizes = []struct {
	name string
	n    int
}{{"300B", 300}, {"4KiB", 4 << 10}, {"64KiB", 64 << 10}}

// verifier verifies one valid signature of a body in its library's own
// format. setup signs body and returns the check to time.
type verifier struct {
	name  string
	setup func(tb testing.TB, body []byte) func() error
}

var verifiers = []verifier{
	{"eachhook", func(tb testing.TB, body []byte) func() error {
		// The timestamped scheme: the same work as the peers that sign a
		// timestamp, plus the tolerance check.
		v, err := signature.NewVerifier(benchSecret)
		require.NoError(tb, err)
		d := Sign(benchSecret, "id", body, time.Now())
		return func() error {
			return v.Verify(body, d.Signature, d.Timestamp, time.Now(), signature.DefaultTolerance)
		}
	}},
	{"eachhook-body", func(tb testing.TB, body []byte) func() error {
		// The original scheme: the body alone, a bare hex signature.
		v, err := signature.NewVerifier(benchSecret)
		require.NoError(tb, err)
		sig := signature.Sign(benchSecret, "", body)
		return func() error {
			return v.Verify(body, sig, "", time.Now(), signature.DefaultTolerance)
		}
	}},
	{"go-github", func(tb testing.TB, body []byte) func() error {
		sig := "sha256=" + hexHMAC([]byte(benchSecret), body)
		return func() error { return github.ValidateSignature(sig, body, []byte(benchSecret)) }
	}},
	{"stripe-go", func(tb testing.TB, body []byte) func() error {
		now := time.Now()
		header := fmt.Sprintf("t=%d,v1=%s", now.Unix(), hex.EncodeToString(webhook.ComputeSignature(now, body, benchSecret)))
		return func() error { return webhook.ValidatePayload(body, header, benchSecret) }
	}},
	{"svix", func(tb testing.TB, body []byte) func() error {
		wh, err := svix.NewWebhook(benchSecret)
		require.NoError(tb, err)
		now := time.Now()
		sig, err := wh.Sign("msg_2Lh9KRb0pzN4LePd3XiA4hgUtXX", now, body)
		require.NoError(tb, err)
		h := http.Header{}
		h.Set("svix-id", "msg_2Lh9KRb0pzN4LePd3XiA4hgUtXX")
		h.Set("svix-timestamp", strconv.FormatInt(now.Unix(), 10))
		h.Set("svix-signature", sig)
		return func() error { return wh.Verify(body, h) }
	}},
	{"standard-webhooks", func(tb testing.TB, body []byte) func() error {
		wh, err := standardwebhooks.NewWebhook(benchSecret)
		require.NoError(tb, err)
		now := time.Now()
		sig, err := wh.Sign("msg_2Lh9KRb0pzN4LePd3XiA4hgUtXX", now, body)
		require.NoError(tb, err)
		h := http.Header{}
		h.Set(standardwebhooks.HeaderWebhookID, "msg_2Lh9KRb0pzN4LePd3XiA4hgUtXX")
		h.Set(standardwebhooks.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
		h.Set(standardwebhooks.HeaderWebhookSignature, sig)
		return func() error { return wh.Verify(body, h) }
	}},
	{"floor", func(tb testing.TB, body []byte) func() error {
		// What the hardware allows: one keyed HMAC reused, one pass of
		// SHA-256 over the body, a hex decode and a constant-time compare.
		mac := hmac.New(sha256.New, []byte(benchSecret))
		sig := hexHMAC([]byte(benchSecret), body)
		return func() error { return floorVerify(mac, body, sig) }
	}},
}

func floorVerify(mac hash.Hash, body []byte, sig string) error {
	var want, sum [sha256.Size]byte
	if _, err := hex.Decode(want[:], []byte(sig)); err != nil {
		return err
	}
	mac.Reset()
	mac.Write(body)
	if !hmac.Equal(mac.Sum(sum[:0]), want[:]) {
		return signature.ErrInvalid
	}
	return nil
}

func hexHMAC(key, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// TestVerifiersAcceptValidSignatures makes sure every benchmarked
// verifier succeeds, and rejects a changed body, so that the benchmark
// times a real check.
func TestVerifiersAcceptValidSignatures(t *testing.T) {
	for _, size := range verifySizes {
		for _, v := range verifiers {
			t.Run(size.name+"/"+v.name, func(t *testing.T) {
				body := BodyOfSize(ID(1), size.n)
				require.Len(t, body, size.n)
				check := v.setup(t, body)
				require.NoError(t, check())
				body[len(body)/2] ^= 1
				require.Error(t, check())
			})
		}
	}
}

// BenchmarkVerify times one valid signature check per library and size.
func BenchmarkVerify(b *testing.B) {
	for _, size := range verifySizes {
		for _, v := range verifiers {
			b.Run("size="+size.name+"/lib="+v.name, func(b *testing.B) {
				body := BodyOfSize(ID(1), size.n)
				check := v.setup(b, body)
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				b.ResetTimer()
				cpu0 := processCPU()
				for range b.N {
					if err := check(); err != nil {
						b.Fatal(err)
					}
				}
				cpu := processCPU() - cpu0
				b.StopTimer()
				b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
			})
		}
	}
}
