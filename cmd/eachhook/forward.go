package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/eachhook/eachhook/eachloop/eachlabs"
)

const forwardUsage = `usage: eachhook forward -api-key K -to URL -secret S [-interval D] [-since D] [-state FILE]

Receives real each::labs deliveries on a machine without a public URL: it
polls the delivery history (GET /v1/webhooks, one request per -interval
at most, longer when the API answers 429 with a Retry-After) and POSTs to
URL every delivery created since forward was first started (with -since
D, also those created within D before that) that it has not forwarded
yet: the recorded payload byte for byte, signed with S (see -scheme).
Prints one line per delivery: its execution id, its status and the local
answer. A delivery the endpoint does not acknowledge (2xx) is tried again
at the next polls, 3 times in all.

What it forwarded, and when it was first started, is kept in a small JSON
state file (-state), so a restart forwards nothing twice; delete the file
to start afresh. Ctrl-C stops it cleanly.

each::labs keeps a history only for predictions created with a
webhook_url: give one that answers 2xx (any endpoint of yours, even one
that discards the body), or the sender retries and the history fills
with failed attempts.

Exit status: 0 when stopped with Ctrl-C, 1 if the API refused the key or
the state file cannot be used, 2 for bad flags. The API key may come from
$EACHLABS_API_KEY and the secret from $EACHHOOK_SECRET.`

const forwardExamples = `examples:
  eachhook forward -api-key "$EACHLABS_API_KEY" -to http://localhost:8080/webhooks/prediction -secret whsec_123
  eachhook forward -to http://localhost:8080/webhooks/prediction -secret whsec_123 -since 1h -interval 10s
  eachhook forward -to http://localhost:3000/hook -secret whsec_123 -state ./forward.json`

// defaultForwardInterval is forward's default -interval.
const defaultForwardInterval = 5 * time.Second

// forwardTries is how often forward posts a delivery the endpoint does
// not acknowledge, in all.
const forwardTries = 3

// forwardState is forward's state file.
type forwardState struct {
	// StartedAt is when forward was first started with this file.
	StartedAt time.Time `json:"started_at"`
	// Forwarded holds the deliveries done with, by deliveryKey.
	Forwarded map[string]forwarded `json:"forwarded"`
}

// forwarded is a delivery forward is done with.
type forwarded struct {
	At   time.Time `json:"at"`
	Line string    `json:"line"` // what was printed for it
	OK   bool      `json:"ok"`   // acknowledged; false when forward gave up
}

// deliveryKey identifies a delivery of the history list.
func deliveryKey(w eachlabs.Webhook) string {
	return w.ExecutionID + "@" + w.CreatedAt
}

func (a *app) forward(args []string) int {
	fset := a.flagSet("forward", forwardUsage, forwardExamples)
	lf := addLiveFlags(fset)
	target := fset.String("to", "", "the local endpoint to deliver to (required)")
	interval := fset.Duration("interval", defaultForwardInterval, "wait at least this long between two requests to the API")
	since := fset.Duration("since", 0, "also forward deliveries created within this long before forward was first started")
	statePath := fset.String("state", "", "the state file (default <user config dir>/eachhook/forward-state.json)")
	if code, ok := a.parse(fset, args); !ok {
		return code
	}
	if fset.NArg() > 0 {
		return a.usageError(fset, "unexpected argument %q", fset.Arg(0))
	}
	switch {
	case *target == "":
		return a.usageError(fset, "-to is required")
	case *interval <= 0:
		return a.usageError(fset, "-interval must be > 0")
	case *since < 0:
		return a.usageError(fset, "-since must be >= 0")
	}
	if err := checkTarget(*target); err != nil {
		return a.usageError(fset, "-to %v", err)
	}
	client, sch, code, ok := a.setupLive(fset, lf)
	if !ok {
		return code
	}
	if *statePath == "" {
		dir, err := os.UserConfigDir()
		if err != nil {
			return a.usageError(fset, "no user config directory (%v): give -state FILE", err)
		}
		*statePath = filepath.Join(dir, "eachhook", "forward-state.json")
	}
	st, err := loadForwardState(*statePath, a.now())
	if err == nil {
		err = st.save(*statePath)
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "eachhook forward: state file: %v\n", err)
		return 1
	}
	from := st.StartedAt.Add(-*since)
	fmt.Fprintf(a.stdout, "forwarding deliveries created since %s to %s, polling every %v; state in %s; Ctrl-C stops\n",
		from.UTC().Format(time.RFC3339), *target, *interval, *statePath)

	s := newSender(*lf.timeout)
	defer s.close()
	tries := map[string]int{}
	sent := 0
	offset := 0
	var wait time.Duration
	for sleep(a.ctx, wait) {
		wait = *interval
		p, err := client.ListWebhooks(a.ctx, eachlabs.ListOptions{Limit: 100, Offset: offset})
		if a.ctx.Err() != nil {
			break
		}
		if err != nil {
			line := apiErrorLine(err, "", client.BaseURL(), *lf.timeout)
			if errors.Is(err, eachlabs.ErrUnauthorized) || errors.Is(err, eachlabs.ErrForbidden) {
				fmt.Fprintf(a.stderr, "eachhook forward: %s\n", line)
				return 1
			}
			if ae, ok := errors.AsType[*eachlabs.APIError](err); ok && ae.RetryAfter > wait {
				wait = ae.RetryAfter
			} else if errors.Is(err, eachlabs.ErrRateLimited) {
				wait = max(wait, defaultRetryAfter)
			}
			fmt.Fprintf(a.stderr, "eachhook forward: %s; next poll in %v\n", line, wait)
			continue
		}

		var fresh []eachlabs.Webhook
		newestFirst, oldest := true, time.Time{}
		for i, w := range p.Webhooks {
			at, ok := createdAt(w)
			if ok && i > 0 && at.After(oldest) {
				newestFirst = false
			}
			if ok {
				oldest = at
			}
			if _, done := st.Forwarded[deliveryKey(w)]; !done && (!ok || !at.Before(from)) {
				fresh = append(fresh, w)
			}
		}
		sortByCreated(fresh)
		changed := false
		for _, w := range fresh {
			if a.ctx.Err() != nil {
				break
			}
			key := deliveryKey(w)
			if _, ok := createdAt(w); !ok {
				line := fmt.Sprintf("%s: created_at %q is not a time: not forwarded", orDash(w.ExecutionID), w.CreatedAt)
				fmt.Fprintln(a.stdout, line)
				st.Forwarded[key], changed = forwarded{At: a.now(), Line: line}, true
				continue
			}
			line, acked := a.redeliver(s, *target, *lf.secret, sch, &w)
			if !acked && a.ctx.Err() != nil {
				// Not recorded: the next start forwards it again, and the
				// receiver's dedupe drops it if it did arrive.
				fmt.Fprintf(a.stdout, "%s: stopped before the answer came; it is forwarded again at the next start\n", orDash(w.ExecutionID))
				break
			}
			tries[key]++
			switch {
			case acked:
				sent++
			case w.Request == "":
			case tries[key] < forwardTries:
				line += fmt.Sprintf("; trying again at the next poll (%d of %d)", tries[key], forwardTries)
			default:
				line += "; giving up: replay it later with eachhook replay"
			}
			fmt.Fprintln(a.stdout, line)
			if acked || w.Request == "" || tries[key] >= forwardTries {
				st.Forwarded[key], changed = forwarded{At: a.now(), Line: line, OK: acked}, true
				delete(tries, key)
			}
		}
		if changed {
			if err := st.save(*statePath); err != nil {
				fmt.Fprintf(a.stderr, "eachhook forward: state file: %v\n", err)
				return 1
			}
		}

		// Next page, or back to the first: new deliveries come first in a
		// newest-first list and last in an oldest-first one.
		offset += len(p.Webhooks)
		if len(p.Webhooks) == 0 || (p.TotalCount != nil && offset >= *p.TotalCount) ||
			(newestFirst && !oldest.IsZero() && oldest.Before(from)) {
			offset = 0
		}
	}
	fmt.Fprintf(a.stdout, "stopped: %d deliveries forwarded in this run; state in %s\n", sent, *statePath)
	return 0
}

// loadForwardState reads the state file at path, or starts one at now if
// there is none.
func loadForwardState(path string, now time.Time) (*forwardState, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &forwardState{StartedAt: now.UTC(), Forwarded: map[string]forwarded{}}, nil
	}
	if err != nil {
		return nil, err
	}
	var st forwardState
	if err := json.Unmarshal(b, &st); err != nil || st.StartedAt.IsZero() {
		return nil, fmt.Errorf("%s is not a forward state file (delete it to start afresh): %v", path, err)
	}
	if st.Forwarded == nil {
		st.Forwarded = map[string]forwarded{}
	}
	return &st, nil
}

// save writes st to path atomically: a crash leaves the old file or the
// new one.
func (st *forwardState) save(path string) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".forward-state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
