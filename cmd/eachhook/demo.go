package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/eachhooktest"
)

const demoUsage = `usage: eachhook demo

Starts a receiver built on package eachhook (eachhook.New, OnSuccess,
OnFailed) on a free loopback port and delivers to it, as the each::labs
sender would, five webhooks: a success, a failure, a duplicate of the
success, a forged one (signed with the wrong secret) and one signed with the
timestamp scheme. Prints one line per delivery: what the receiver answered,
which callback ran, and whether that was the expected outcome.

Exit status: 0 if every outcome was the expected one, 1 if not.`

const demoExamples = `examples:
  eachhook demo
  go run ./cmd/eachhook demo   # from a clone, without installing`

// demoSecret is the secret the demo receiver and sender share.
const demoSecret = "whsec_demo"

// demoCase is one delivery of the demo and its expected outcome.
type demoCase struct {
	name     string
	id       string
	body     []byte
	secret   string
	scheme   eachhooktest.Scheme
	wantCode int
	wantKind string
	wantCall string // "OnSuccess", "OnFailed" or "" for none
}

// callback is a callback run seen by the demo.
type callback struct {
	name   string // OnSuccess or OnFailed
	id     string
	detail string
}

func (a *app) demo(args []string) int {
	fs := a.flagSet("demo", demoUsage, demoExamples)
	timeout := fs.Duration("timeout", 5*time.Second, "give up waiting for a delivery or a callback after this long")
	if code, ok := a.parse(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return a.usageError(fs, "unexpected argument %q", fs.Arg(0))
	}

	// Each callback reports on calls; the buffer holds more than the demo
	// can ever cause, so a callback never blocks.
	calls := make(chan callback, 16)
	outcomes := make(chan outcome, 16)
	rc, err := newReceiver(receiverConfig{
		secrets: []string{demoSecret},
		path:    "/webhooks/prediction",
		now:     a.now,
		onSuccess: func(_ context.Context, s *eachhook.Success) error {
			u, err := s.URL()
			if err != nil {
				u = string(s.Output)
			}
			calls <- callback{"OnSuccess", s.ID, "output " + u}
			return nil
		},
		onFailed: func(_ context.Context, f *eachhook.Failure) error {
			calls <- callback{"OnFailed", f.ID, fmt.Sprintf("logs %q", f.Logs)}
			return nil
		},
		report: func(o outcome) { outcomes <- o },
	})
	if err != nil {
		fmt.Fprintf(a.stderr, "eachhook demo: %v\n", err)
		return 1
	}
	defer rc.Shutdown(context.Background())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		rc.Shutdown(context.Background())
		fmt.Fprintf(a.stderr, "eachhook demo: %v\n", err)
		return 1
	}
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: *timeout}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	url := "http://" + ln.Addr().String() + "/webhooks/prediction"
	fmt.Fprintf(a.stdout, "receiver: eachhook.New on %s, secret %q\n", url, demoSecret)

	success := eachhooktest.SuccessBody("pred-success-1")
	cases := []demoCase{
		{"success", "pred-success-1", success, demoSecret, eachhooktest.BodyScheme, http.StatusOK, kindAccepted, "OnSuccess"},
		{"failed", "pred-failed-2", eachhooktest.FailedBody("pred-failed-2"), demoSecret, eachhooktest.BodyScheme, http.StatusOK, kindAccepted, "OnFailed"},
		{"duplicate", "pred-success-1", success, demoSecret, eachhooktest.BodyScheme, http.StatusOK, kindDuplicate, ""},
		{"forged", "pred-forged-3", eachhooktest.SuccessBody("pred-forged-3"), "whsec_attacker", eachhooktest.BodyScheme, http.StatusUnauthorized, kindRefused, ""},
		{"timestamped", "pred-stamped-4", eachhooktest.SuccessBody("pred-stamped-4"), demoSecret, eachhooktest.TimestampScheme, http.StatusOK, kindAccepted, "OnSuccess"},
	}

	s := newSender(*timeout)
	defer s.close()
	good := 0
	for _, c := range cases {
		header := eachhooktest.Headers(c.secret, c.body, c.scheme, a.now())
		r := s.post(a.ctx, url, c.body, header)
		var o outcome
		if r.Err == nil {
			o = <-outcomes // the receiver reports before it answers
		}
		answer := fmt.Sprintf("%d %s", r.Code, http.StatusText(r.Code))
		if r.Err != nil {
			answer = "no answer: " + r.Err.Error()
		}

		var ran string
		ok := r.Err == nil && r.Code == c.wantCode && o.Kind == c.wantKind
		switch {
		case c.wantCall != "":
			select {
			case cb := <-calls:
				ran = cb.name + " ran: " + cb.detail
				ok = ok && cb.name == c.wantCall && cb.id == c.id
			case <-time.After(*timeout):
				ran = "no callback within " + timeout.String()
				ok = false
			}
		case o.Kind == kindDuplicate:
			ran = "no callback: duplicate of an accepted id"
		case o.Kind == kindRefused:
			ran = "no callback: " + o.Reason
		default:
			ran = "no callback"
		}
		verdict := "ok"
		if ok {
			good++
		} else {
			verdict = "UNEXPECTED"
		}
		fmt.Fprintf(a.stdout, "%-3s %-12s %-15s %-17s %s\n", verdict, c.name, c.id, answer, ran)
	}

	// Stop the server, then drain the Handler: any callback that ran for a
	// delivery that expected none is now in calls.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(a.ctx), *timeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		fmt.Fprintf(a.stderr, "eachhook demo: stopping the server: %v\n", err)
		return 1
	}
	<-served
	if err := rc.Shutdown(ctx); err != nil {
		fmt.Fprintf(a.stderr, "eachhook demo: draining the receiver: %v\n", err)
		return 1
	}
	close(calls)
	extra := 0
	for cb := range calls {
		fmt.Fprintf(a.stdout, "UNEXPECTED: %s ran for %s\n", cb.name, cb.id)
		extra++
	}
	if good == len(cases) && extra == 0 {
		fmt.Fprintf(a.stdout, "all %d deliveries had the expected outcome: one callback per prediction id, none for the duplicate and the forgery\n", len(cases))
		return 0
	}
	fmt.Fprintf(a.stdout, "%d of %d deliveries had the expected outcome, %d unexpected callbacks\n", good, len(cases), extra)
	return 1
}
