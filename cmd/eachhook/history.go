package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/eachhook/eachhook/eachloop/eachlabs"
	"github.com/eachhook/eachhook/signature"
)

const historyUsage = `usage: eachhook history -api-key K EXECUTION_ID
       eachhook history -api-key K -list [-limit N] [-offset N]

Shows the delivery history each::labs keeps for webhooks: for one
prediction (execution) id, every delivery attempt with its time, status,
the HTTP code your endpoint answered and the error; with -list, a page of
your organisation's webhooks. Calls GET /v1/webhooks/{execution_id} and
GET /v1/webhooks?limit=&offset= with "Authorization: Bearer <key>".

For each delivery it names the form the sender used, read from the
headers it recorded (or, when none were recorded, from the body), and
says what your receiver needs for it:
  A  X-Webhook-Signature: <hex HMAC-SHA256 of the body>
  B  X-Webhook-Secret: <the secret in plain text> (the documented form today)
  C  X-Webhook-Signature: sha256=<hex> with X-Webhook-Timestamp (not publicly documented)
  -  no signature or secret: the prediction was created without webhook_secret

Exit status: 0 on success, 1 if the API refused or did not answer, 2 for
bad flags. The API key may come from $EACHLABS_API_KEY instead of -api-key.`

const historyExamples = `examples:
  eachhook history -api-key "$EACHLABS_API_KEY" abc123-def456-ghi789
  EACHLABS_API_KEY=... eachhook history -list -limit 10
  eachhook history -api-url http://localhost:9000 -api-key test abc123-def456-ghi789`

func (a *app) history(args []string) int {
	fs := a.flagSet("history", historyUsage, historyExamples)
	apiKey := fs.String("api-key", "", "each::labs API key (default $EACHLABS_API_KEY)")
	apiURL := fs.String("api-url", eachlabs.DefaultBaseURL, "base URL of the each::labs API")
	list := fs.Bool("list", false, "list webhooks instead of showing one execution's attempts")
	limit := fs.Int("limit", 20, "with -list: how many webhooks (1 to 100)")
	offset := fs.Int("offset", 0, "with -list: how many webhooks to skip")
	timeout := fs.Duration("timeout", eachlabs.DefaultTimeout, "give up on the API after this long")
	rest, code, ok := a.parseInterspersed(fs, args)
	if !ok {
		return code
	}
	if *apiKey == "" {
		*apiKey = a.getenv("EACHLABS_API_KEY")
	}
	if *apiKey == "" {
		return a.usageError(fs, "-api-key is required (or set $EACHLABS_API_KEY)")
	}
	switch {
	case *list && len(rest) > 0:
		return a.usageError(fs, "give -list or an EXECUTION_ID, not both")
	case !*list && len(rest) != 1:
		return a.usageError(fs, "give one EXECUTION_ID, or -list")
	case *limit < 1 || *limit > 100:
		return a.usageError(fs, "-limit must be between 1 and 100")
	case *offset < 0:
		return a.usageError(fs, "-offset must be >= 0")
	case *timeout <= 0:
		return a.usageError(fs, "-timeout must be > 0")
	}
	client, err := eachlabs.NewClient(*apiKey, eachlabs.WithBaseURL(*apiURL), eachlabs.WithTimeout(*timeout))
	if err != nil {
		return a.usageError(fs, "%v", err)
	}

	if *list {
		page, err := client.ListWebhooks(a.ctx, eachlabs.ListOptions{Limit: *limit, Offset: *offset})
		if err != nil {
			fmt.Fprintf(a.stderr, "eachhook history: %s\n", apiErrorLine(err, "", client.BaseURL(), *timeout))
			return 1
		}
		a.printWebhookList(page)
		return 0
	}
	w, err := client.GetWebhook(a.ctx, rest[0])
	if err != nil {
		fmt.Fprintf(a.stderr, "eachhook history: %s\n", apiErrorLine(err, rest[0], client.BaseURL(), *timeout))
		return 1
	}
	a.printWebhook(w)
	return 0
}

// form is the way a delivery was authenticated by the sender.
type form string

// The forms of eachlabs-facts.md.
const (
	formA        form = "A"
	formB        form = "B"
	formC        form = "C"
	formCB       form = "C+B"
	formUnsigned form = "-"
)

// deliveryForm tells the form of a recorded delivery from its headers or,
// when none were recorded, from its body (the payload shape each form's
// documentation shows); byBody says it was guessed that way.
func deliveryForm(w *eachlabs.Webhook) (f form, byBody bool) {
	h := http.Header{}
	for k, v := range w.Headers {
		h.Set(k, v)
	}
	sig, ts, sec := h.Get(signature.Header), h.Get(signature.HeaderTimestamp), h.Get(signature.HeaderSecret)
	switch {
	case sig != "" && ts != "":
		if sec != "" {
			return formCB, false
		}
		return formC, false
	case sig != "":
		return formA, false
	case sec != "":
		return formB, false
	case len(w.Headers) > 0:
		return formUnsigned, false
	}
	var body struct {
		ID     *string `json:"id"`
		ExecID *string `json:"exec_id"`
	}
	if json.Unmarshal([]byte(w.Request), &body) == nil {
		switch {
		case body.ExecID != nil:
			return formB, true
		case body.ID != nil:
			return formA, true
		}
	}
	return "", true
}

// formAdvice says in one line what a receiver needs for deliveries of f.
func formAdvice(f form) string {
	switch f {
	case formA:
		return `this account signs the body (form A, X-Webhook-Signature: <hex>): eachhook.WithSecret verifies it as it is; eachhook replay and forward send this form by default`
	case formB:
		return `this account sends the plain secret header (form B, X-Webhook-Secret, the documented behaviour): enable eachhook.WithLegacySecretHeader (eachhook listen -legacy-secret-header), or every delivery is refused with 401`
	case formC:
		return `this account signs "<timestamp>.<body>" (form C, X-Webhook-Signature: sha256=… with X-Webhook-Timestamp; not publicly documented): eachhook verifies it as it is if the clock is within -tolerance (WithTolerance, 15m); replay and forward send it with -scheme timestamp`
	case formCB:
		return `this account signs "<timestamp>.<body>" and also sends the plain secret (forms C and B): eachhook decides by the signature; WithLegacySecretHeader is not needed`
	case formUnsigned:
		return `no signature and no secret header: the predictions were created without webhook_secret; create them with one, or eachhook refuses them with 401`
	}
	return `the form cannot be told: no headers were recorded and the body is not a known payload`
}

// formLine is the FORM cell of a delivery, such as "B" or "A (by body)".
func formLine(w *eachlabs.Webhook) string {
	f, byBody := deliveryForm(w)
	if f == "" {
		return "?"
	}
	if byBody {
		return string(f) + " (by body)"
	}
	return string(f)
}

// printForms prints one advice line per form seen in ws, the most common
// first.
func (a *app) printForms(ws []eachlabs.Webhook) {
	counts := map[form]int{}
	var order []form
	for i := range ws {
		f, _ := deliveryForm(&ws[i])
		if counts[f] == 0 {
			order = append(order, f)
		}
		counts[f]++
	}
	slices.SortStableFunc(order, func(x, y form) int { return counts[y] - counts[x] })
	for _, f := range order {
		prefix := ""
		if len(order) > 1 {
			prefix = fmt.Sprintf("%d of %d deliveries: ", counts[f], len(ws))
		}
		fmt.Fprintln(a.stdout, prefix+formAdvice(f))
	}
}

// parseInterspersed parses flags that may come before or after positional
// arguments, as in "history ID -api-key K".
func (a *app) parseInterspersed(fs *flag.FlagSet, args []string) (rest []string, code int, ok bool) {
	if code, ok := a.parse(fs, args); !ok {
		return nil, code, false
	}
	for fs.NArg() > 0 {
		args = fs.Args()
		if args[0] == "--" {
			return append(rest, args[1:]...), 0, true
		}
		rest = append(rest, args[0])
		if code, ok := a.parse(fs, args[1:]); !ok {
			return nil, code, false
		}
	}
	return rest, 0, true
}

// apiErrorLine explains an error of the each::labs API at base in one line.
func apiErrorLine(err error, id, base string, timeout time.Duration) string {
	var apiErr *eachlabs.APIError
	msg := ""
	if errors.As(err, &apiErr) {
		msg = fmt.Sprintf("%d %s", apiErr.StatusCode, http.StatusText(apiErr.StatusCode))
		if apiErr.Message != "" {
			msg += " (" + apiErr.Message + ")"
		}
		msg += ": "
	}
	switch {
	case errors.Is(err, eachlabs.ErrUnauthorized):
		return msg + "the API key was refused: check -api-key or $EACHLABS_API_KEY"
	case errors.Is(err, eachlabs.ErrForbidden):
		return msg + "this API key may not read webhooks"
	case errors.Is(err, eachlabs.ErrNotFound) && id != "":
		return msg + fmt.Sprintf("no webhook for execution id %q: check the id (it is the prediction id)", id)
	case errors.Is(err, eachlabs.ErrNotFound):
		return msg + "not found: check -api-url"
	case errors.Is(err, eachlabs.ErrBadRequest):
		if id != "" {
			return msg + fmt.Sprintf("the API rejected the request: is %q a valid execution id?", id)
		}
		return msg + "the API rejected the request"
	case errors.Is(err, eachlabs.ErrRateLimited) && apiErr.RetryAfter > 0:
		return msg + fmt.Sprintf("rate limited: the API asks to wait %v", apiErr.RetryAfter)
	case errors.Is(err, eachlabs.ErrRateLimited):
		return msg + "rate limited: try again in a minute"
	case errors.Is(err, eachlabs.ErrServer):
		return msg + "each::labs server error: try again later"
	case errors.Is(err, eachlabs.ErrTimeout):
		return fmt.Sprintf("no answer from %s within %v: check -api-url and the network, or raise -timeout", base, timeout)
	case apiErr != nil:
		return msg + "unexpected answer from the API"
	}
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return fmt.Sprintf("cannot reach %s: %v", base, ue.Err)
	}
	return err.Error()
}

func (a *app) printWebhook(w *eachlabs.Webhook) {
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "execution\t%s\n", w.ExecutionID)
	fmt.Fprintf(tw, "url\t%s\n", w.URL)
	if w.Source != "" {
		fmt.Fprintf(tw, "source\t%s\n", w.Source)
	}
	fmt.Fprintf(tw, "created\t%s\n", w.CreatedAt)
	fmt.Fprintf(tw, "form\t%s\n", formLine(w))
	tw.Flush()
	a.printForms([]eachlabs.Webhook{*w})
	fmt.Fprintln(a.stdout)
	if len(w.Attempts) == 0 {
		fmt.Fprintln(a.stdout, "no delivery attempts yet")
		return
	}
	tw = tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tTIME\tSTATUS\tHTTP\tERROR")
	for i, at := range w.Attempts {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", i+1, at.CreatedAt, at.Status, httpCode(at.StatusCode), attemptError(at))
	}
	tw.Flush()
}

func (a *app) printWebhookList(p *eachlabs.WebhookPage) {
	if len(p.Webhooks) == 0 {
		fmt.Fprintf(a.stdout, "no webhooks at offset %d\n", p.Offset)
		return
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "EXECUTION\tCREATED\tFORM\tURL\tATTEMPTS\tLAST STATUS\tLAST HTTP")
	for _, w := range p.Webhooks {
		attempts, last, code := "-", "-", "-"
		if n := len(w.Attempts); n > 0 {
			attempts = fmt.Sprint(n)
			last, code = w.Attempts[n-1].Status, httpCode(w.Attempts[n-1].StatusCode)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", orDash(w.ExecutionID), w.CreatedAt, formLine(&w), w.URL, attempts, last, code)
	}
	tw.Flush()
	a.printForms(p.Webhooks)
	shown := fmt.Sprintf("webhooks %d-%d", p.Offset+1, p.Offset+len(p.Webhooks))
	if p.TotalCount != nil {
		shown += fmt.Sprintf(" of %d", *p.TotalCount)
	}
	if p.TotalCount == nil || p.Offset+len(p.Webhooks) < *p.TotalCount {
		shown += fmt.Sprintf("; next page: -offset %d", p.Offset+len(p.Webhooks))
	}
	fmt.Fprintln(a.stdout, shown)
	fmt.Fprintln(a.stdout, `attempts of one webhook: eachhook history EXECUTION`)
}

func httpCode(c int) string {
	if c == 0 {
		return "-"
	}
	return fmt.Sprint(c)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// attemptError is the error column: the API's error message or, for a
// failed attempt without one, the start of the endpoint's answer.
func attemptError(at eachlabs.Attempt) string {
	if at.ErrorMessage != "" {
		return oneLine(at.ErrorMessage)
	}
	if at.Status != eachlabs.AttemptSuccess && at.Response != "" {
		return "response " + oneLine(at.Response)
	}
	return ""
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return shorten(s, 100)
}
