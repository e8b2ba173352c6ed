package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDemoDeliversFiveWebhooksWithExpectedOutcomes(t *testing.T) {
	r := runCmd(t, runOpts{}, "demo")
	require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	require.Empty(t, r.stderr)

	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	require.Len(t, lines, 7, r.stdout)
	require.Regexp(t, `^receiver: eachhook\.New on http://127\.0\.0\.1:\d+/webhooks/prediction, secret "whsec_demo"$`, lines[0])
	want := []string{
		`ok  success      pred-success-1  200 OK            OnSuccess ran: output https://storage.example.com/predictions/abc123/image.jpg`,
		`ok  failed       pred-failed-2   200 OK            OnFailed ran: logs "Error: Model timeout after 30s"`,
		`ok  duplicate    pred-success-1  200 OK            no callback: duplicate of an accepted id`,
		`ok  forged       pred-forged-3   401 Unauthorized  no callback: signature does not match: the secret is wrong or the body was changed`,
		`ok  timestamped  pred-stamped-4  200 OK            OnSuccess ran: output https://storage.example.com/predictions/abc123/image.jpg`,
	}
	require.Equal(t, want, lines[1:6])
	require.Equal(t, "all 5 deliveries had the expected outcome: one callback per prediction id, none for the duplicate and the forgery", lines[6])
	require.NotRegexp(t, regexp.MustCompile(`UNEXPECTED`), r.stdout)
}
