package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/eachhook/eachhook/eachloop/eachlabs"
)

const replayUsage = `usage: eachhook replay -api-key K -url URL -secret S EXECUTION_ID...
       eachhook replay -api-key K -url URL -secret S -since DURATION

Sends deliveries again from the history each::labs keeps: for each
execution (prediction) id, the payload the sender recorded (GET
/v1/webhooks/{execution_id}, its "request"), byte for byte, POSTed to URL
and signed with S the way the sender signs (-scheme body: X-Webhook-Signature
of the body; timestamp: sha256= of "<unix time>.<body>" with
X-Webhook-Timestamp; secret: the plain X-Webhook-Secret header). Prints
each answer. With -since, replays every delivery of the history list
(GET /v1/webhooks) created within that window before now, oldest first:
after a crash, replay the last hour and the receiver's dedupe drops the
deliveries it already ran (answered 200 without a callback).

A delivery whose payload each::labs did not keep (no "request") is
reported and counts as not replayed. A 429 from the API is waited out
(its Retry-After, else 5s) up to 5 times.

Exit status: 0 if every delivery was acknowledged (2xx), 1 if one was not
or could not be replayed or the API failed, 2 for bad flags. The API key
may come from $EACHLABS_API_KEY and the secret from $EACHHOOK_SECRET.`

const replayExamples = `examples:
  eachhook replay -api-key "$EACHLABS_API_KEY" -url http://localhost:8080/webhooks/prediction -secret whsec_123 abc123-def456-ghi789
  eachhook replay -url http://localhost:8080/webhooks/prediction -secret whsec_123 -since 1h
  eachhook replay -url https://example.com/hook -secret whsec_123 -scheme timestamp -since 30m`

// rateLimitTries is how often a request refused with 429 is made in all.
const rateLimitTries = 6

// defaultRetryAfter is the wait after a 429 that names none.
const defaultRetryAfter = 5 * time.Second

// liveFlags are the flags of the commands that read the delivery history
// and deliver to a local endpoint.
type liveFlags struct {
	apiKey, apiURL, secret, scheme *string
	timeout                        *time.Duration
}

func addLiveFlags(fs *flag.FlagSet) liveFlags {
	return liveFlags{
		apiKey:  fs.String("api-key", "", "each::labs API key (default $EACHLABS_API_KEY)"),
		apiURL:  fs.String("api-url", eachlabs.DefaultBaseURL, "base URL of the each::labs API"),
		secret:  fs.String("secret", "", "the secret your receiver verifies with (default $EACHHOOK_SECRET)"),
		scheme:  fs.String("scheme", "body", "how to authenticate each delivery: body (HMAC of the body), timestamp (HMAC of \"<unix time>.<body>\") or secret (plain X-Webhook-Secret)"),
		timeout: fs.Duration("timeout", eachlabs.DefaultTimeout, "give up on a request (to the API or the endpoint) after this long"),
	}
}

// setupLive validates the flags and returns the API client and the scheme.
func (a *app) setupLive(fs *flag.FlagSet, lf liveFlags) (*eachlabs.Client, eachhooktest.Scheme, int, bool) {
	if *lf.apiKey == "" {
		*lf.apiKey = a.getenv("EACHLABS_API_KEY")
	}
	if *lf.secret == "" {
		*lf.secret = a.getenv("EACHHOOK_SECRET")
	}
	sch, err := parseScheme(*lf.scheme)
	if err != nil {
		return nil, 0, a.usageError(fs, "%v", err), false
	}
	switch {
	case *lf.apiKey == "":
		return nil, 0, a.usageError(fs, "-api-key is required (or set $EACHLABS_API_KEY)"), false
	case *lf.secret == "":
		return nil, 0, a.usageError(fs, "-secret is required (or set $EACHHOOK_SECRET)"), false
	case *lf.timeout <= 0:
		return nil, 0, a.usageError(fs, "-timeout must be > 0"), false
	}
	client, err := eachlabs.NewClient(*lf.apiKey, eachlabs.WithBaseURL(*lf.apiURL), eachlabs.WithTimeout(*lf.timeout))
	if err != nil {
		return nil, 0, a.usageError(fs, "%v", err), false
	}
	return client, sch, 0, true
}

// checkTarget validates the endpoint flag.
func checkTarget(target string) error {
	if !strings.HasPrefix(target, "http://") && !strings.HasPrefix(target, "https://") {
		return fmt.Errorf("must be an http:// or https:// URL, not %q", target)
	}
	return nil
}

func (a *app) replay(args []string) int {
	fs := a.flagSet("replay", replayUsage, replayExamples)
	lf := addLiveFlags(fs)
	target := fs.String("url", "", "the endpoint to deliver to (required)")
	since := fs.Duration("since", 0, "replay every delivery created within this long before now, instead of EXECUTION_IDs")
	ids, code, ok := a.parseInterspersed(fs, args)
	if !ok {
		return code
	}
	if *target == "" {
		return a.usageError(fs, "-url is required")
	}
	if err := checkTarget(*target); err != nil {
		return a.usageError(fs, "-url %v", err)
	}
	switch {
	case *since < 0:
		return a.usageError(fs, "-since must be > 0")
	case *since > 0 && len(ids) > 0:
		return a.usageError(fs, "give EXECUTION_IDs or -since, not both")
	case *since == 0 && len(ids) == 0:
		return a.usageError(fs, "give one or more EXECUTION_IDs, or -since DURATION")
	}
	client, sch, code, ok := a.setupLive(fs, lf)
	if !ok {
		return code
	}
	s := newSender(*lf.timeout)
	defer s.close()

	var todo []eachlabs.Webhook
	failed := 0
	if *since > 0 {
		from := a.now().Add(-*since)
		var unreadable []eachlabs.Webhook
		err := a.walkHistory(client, from, func(w eachlabs.Webhook, at time.Time, ok bool) {
			switch {
			case !ok:
				unreadable = append(unreadable, w)
			case !at.Before(from):
				todo = append(todo, w)
			}
		})
		if err != nil {
			fmt.Fprintf(a.stderr, "eachhook replay: %s\n", apiErrorLine(err, "", client.BaseURL(), *lf.timeout))
			return 1
		}
		for _, w := range unreadable {
			fmt.Fprintf(a.stdout, "%s: created_at %q is not a time: replay it by id if it falls in the window\n", orDash(w.ExecutionID), w.CreatedAt)
			failed++
		}
		sortByCreated(todo)
		fmt.Fprintf(a.stdout, "%d deliveries created since %s\n", len(todo), from.UTC().Format(time.RFC3339))
	} else {
		for _, id := range ids {
			var w *eachlabs.Webhook
			err := a.rateLimited(func() (err error) {
				w, err = client.GetWebhook(a.ctx, id)
				return err
			})
			if err != nil {
				fmt.Fprintf(a.stdout, "%s: %s\n", id, apiErrorLine(err, id, client.BaseURL(), *lf.timeout))
				failed++
				continue
			}
			if w.ExecutionID == "" {
				w.ExecutionID = id
			}
			todo = append(todo, *w)
		}
	}

	acked := 0
	for _, w := range todo {
		if a.ctx.Err() != nil {
			break
		}
		if w.Request == "" && w.ExecutionID != "" && *since > 0 {
			// The list may leave the payload out; the webhook itself has it.
			if full, err := client.GetWebhook(a.ctx, w.ExecutionID); err == nil && full.Request != "" {
				w = *full
			}
		}
		r, ok := a.redeliver(s, *target, *lf.secret, sch, &w)
		fmt.Fprintln(a.stdout, r)
		if ok {
			acked++
		} else {
			failed++
		}
	}
	total := acked + failed
	if a.ctx.Err() != nil {
		fmt.Fprintf(a.stdout, "interrupted: %d of %d acknowledged\n", acked, total)
		return 1
	}
	if failed > 0 {
		fmt.Fprintf(a.stdout, "%d of %d acknowledged; %d not\n", acked, total, failed)
		return 1
	}
	fmt.Fprintf(a.stdout, "%d of %d acknowledged\n", acked, total)
	return 0
}

// redeliver POSTs the recorded payload of w to target once, and returns
// the line to print and whether it was acknowledged.
func (a *app) redeliver(s *sender, target, secret string, sch eachhooktest.Scheme, w *eachlabs.Webhook) (string, bool) {
	id := orDash(w.ExecutionID)
	if w.Request == "" {
		return fmt.Sprintf("%s: each::labs kept no payload (no \"request\"): cannot send it again", id), false
	}
	body := []byte(w.Request)
	header := eachhooktest.Headers(secret, body, sch, a.now())
	r := s.post(a.ctx, target, body, header)
	r.N, r.Last = 1, true
	answer := strings.TrimPrefix(r.String(), "attempt 1: ")
	verdict := "not acknowledged"
	if r.acknowledged() {
		verdict = "acknowledged"
	}
	return fmt.Sprintf("%s %s: %s (%s)", id, payloadStatus(body), answer, verdict), r.acknowledged()
}

// payloadStatus returns the "status" of a payload, or "-".
func payloadStatus(body []byte) string {
	var p struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(body, &p) != nil || p.Status == "" {
		return "-"
	}
	return p.Status
}

// rateLimited calls fn, again after the wait a 429 asks for, at most
// rateLimitTries times in all.
func (a *app) rateLimited(fn func() error) error {
	for try := 1; ; try++ {
		err := fn()
		if !errors.Is(err, eachlabs.ErrRateLimited) || try == rateLimitTries {
			return err
		}
		wait := defaultRetryAfter
		if ae, ok := errors.AsType[*eachlabs.APIError](err); ok && ae.RetryAfter > 0 {
			wait = ae.RetryAfter
		}
		fmt.Fprintf(a.stderr, "rate limited by the API: waiting %v\n", wait)
		if !sleep(a.ctx, wait) {
			return a.ctx.Err()
		}
	}
}

// walkHistory calls fn with every webhook of the history list that may
// have been created at or after from, with its created_at (ok false when
// unreadable). The list's order is not documented: while every page is
// newest first it stops at the first webhook older than from; otherwise it
// reads the whole list. A page may hold fewer webhooks than asked for.
func (a *app) walkHistory(client *eachlabs.Client, from time.Time, fn func(w eachlabs.Webhook, at time.Time, ok bool)) error {
	newestFirst := true
	var prev time.Time
	offset := 0
	for {
		var p *eachlabs.WebhookPage
		err := a.rateLimited(func() (err error) {
			p, err = client.ListWebhooks(a.ctx, eachlabs.ListOptions{Limit: 100, Offset: offset})
			return err
		})
		if err != nil {
			return err
		}
		for _, w := range p.Webhooks {
			at, ok := createdAt(w)
			fn(w, at, ok)
			if !ok {
				continue
			}
			if !prev.IsZero() && at.After(prev) {
				newestFirst = false
			}
			prev = at
			if newestFirst && at.Before(from) {
				return nil
			}
		}
		offset += len(p.Webhooks)
		if len(p.Webhooks) == 0 || (p.TotalCount != nil && offset >= *p.TotalCount) {
			return nil
		}
	}
}

// createdAt reads a webhook's created_at.
func createdAt(w eachlabs.Webhook) (time.Time, bool) {
	t, err := time.Parse(time.RFC3339Nano, w.CreatedAt)
	return t, err == nil
}

// sortByCreated sorts webhooks oldest first.
func sortByCreated(ws []eachlabs.Webhook) {
	slices.SortStableFunc(ws, func(x, y eachlabs.Webhook) int {
		tx, _ := createdAt(x)
		ty, _ := createdAt(y)
		return tx.Compare(ty)
	})
}
