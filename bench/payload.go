package bench

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/signature"
)

// IDLen is the length of the prediction ids the benchmarks use, that of a
// UUID such as "0f8fad5b-d9cb-469f-a165-70867728950e".
const IDLen = 36

// ID returns the n-th benchmark prediction id: IDLen characters in the
// layout of a UUID, distinct for every n >= 0.
func ID(n uint64) string {
	var b [IDLen]byte
	AppendID(b[:0], n)
	return string(b[:])
}

// AppendID appends ID(n) to dst without allocating a string.
func AppendID(dst []byte, n uint64) []byte {
	const hexDigits = "0123456789abcdef"
	var b [IDLen]byte
	// 8-4-4-4-12; the low 64 bits of n fill the last 16 hex digits.
	copy(b[:], "00000000-0000-4000-8000-000000000000")
	pos := IDLen - 1
	for i := 0; i < 16; i++ {
		if b[pos] == '-' {
			pos--
		}
		b[pos] = hexDigits[n&0xf]
		n >>= 4
		pos--
	}
	return append(dst, b[:]...)
}

// BodyOfSize returns the documented success payload for id, padded with a
// "logs" field to exactly size bytes. size must be at least the length of
// eachhooktest.SuccessBody(id) plus 12.
func BodyOfSize(id string, size int) []byte {
	base := eachhooktest.SuccessBody(id)
	const field = `,"logs":""`
	pad := size - len(base) - len(field)
	if pad < 0 {
		panic(fmt.Sprintf("bench: body of %d bytes is too small for id %q", size, id))
	}
	out := make([]byte, 0, size)
	out = append(out, base[:len(base)-1]...)
	out = append(out, `,"logs":"`...)
	out = append(out, bytes.Repeat([]byte{'x'}, pad)...)
	out = append(out, `"}`...)
	return out
}

// Delivery is one pre-signed webhook delivery, ready to send.
type Delivery struct {
	ID        string
	Body      []byte
	Signature string // value of signature.Header
	Timestamp string // value of signature.HeaderTimestamp
}

// Sign returns the delivery of body for id, signed with secret under the
// timestamped scheme at time now.
func Sign(secret, id string, body []byte, now time.Time) Delivery {
	ts := strconv.FormatInt(now.Unix(), 10)
	return Delivery{ID: id, Body: body, Timestamp: ts, Signature: "sha256=" + signature.Sign(secret, ts, body)}
}

// SetHeaders sets the headers the sender puts on d.
func (d *Delivery) SetHeaders(h http.Header) {
	h.Set("Content-Type", "application/json")
	h.Set(signature.Header, d.Signature)
	h.Set(signature.HeaderTimestamp, d.Timestamp)
}
