package eachhook

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDecodeEnvelope checks the hand-written top-level scan against
// encoding/json: for every valid JSON object, the members it finds, and the
// id and status it reads, are the ones encoding/json finds.
func FuzzDecodeEnvelope(f *testing.F) {
	for _, s := range []string{
		`{"id":"a","status":"success","output":"https://x/y.png","input":{"p":"q"},"metrics":{"predict_time":12.5,"cost":0.05}}`,
		`{"id":"b","status":"failed","output":null,"logs":"Error: Model timeout after 30s"}`,
		` { "id" : "c\"d" , "status":"\u0073uccess", "x":[1,{"y":"]}"}] } `,
		`{"id":5}`, `{"id":"x","status":7}`, `[]`, `"id"`, `{}`, `{"id":"","status":""}`,
		`{"id":"a","id":"b"}`, `{"nested":{"id":"inner"},"id":"outer"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		env, err := decodeEnvelope(body)
		var m map[string]json.RawMessage
		if json.Unmarshal(body, &m) != nil {
			if err == nil && !json.Valid(body) {
				t.Fatalf("accepted invalid JSON %q", body)
			}
			if err == nil {
				// A valid non-object must have been refused.
				var v any
				if json.Unmarshal(body, &v) == nil {
					if _, ok := v.(map[string]any); !ok {
						t.Fatalf("accepted non-object %q", body)
					}
				}
			}
			return
		}
		var keys [][]byte
		members(body, func(k, _ []byte) bool { keys = append(keys, k); return true })
		for _, k := range keys {
			if bytes.IndexByte(k, '\\') >= 0 {
				return // escaped keys are compared raw by design
			}
		}
		var want struct {
			ID     any `json:"id"`
			Status any `json:"status"`
		}
		if raw, ok := m["id"]; ok {
			json.Unmarshal(raw, &want.ID)
		}
		if raw, ok := m["status"]; ok {
			json.Unmarshal(raw, &want.Status)
		}
		id, idIsString := want.ID.(string)
		status, statusIsString := want.Status.(string)
		_, hasStatus := m["status"]
		wantOK := idIsString && id != "" && (!hasStatus || statusIsString)
		if wantOK != (err == nil) {
			t.Fatalf("decodeEnvelope(%q) error %v; encoding/json sees id %#v status %#v", body, err, want.ID, want.Status)
		}
		if err == nil && (env.ID != id || env.Status != status) {
			t.Fatalf("decodeEnvelope(%q) = %+v; encoding/json: id %q status %q", body, env, id, status)
		}
		if len(keys) != len(m) && !hasDuplicateKeys(keys) {
			t.Fatalf("members found %d keys, encoding/json %d in %q", len(keys), len(m), body)
		}
		p := decodePayload(env.ID, body)
		if raw, ok := m["output"]; ok && !bytes.Equal(raw, p.output) {
			t.Fatalf("output %q, want %q", p.output, raw)
		}
	})
}

func hasDuplicateKeys(keys [][]byte) bool {
	seen := map[string]bool{}
	for _, k := range keys {
		if seen[string(k)] {
			return true
		}
		seen[string(k)] = true
	}
	return false
}
