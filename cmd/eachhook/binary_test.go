package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eachhook/eachhook/eachhooktest"
	"github.com/stretchr/testify/require"
)

// TestBuiltBinary builds the command and runs it as a user would: exit
// codes, standard input, and Ctrl-C (SIGINT) stopping listen.
func TestBuiltBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "eachhook")
	build := exec.Command("go", "build", "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, string(out))

	exitCode := func(err error) int {
		if err == nil {
			return 0
		}
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		return ee.ExitCode()
	}

	t.Run("demo", func(t *testing.T) {
		out, err := exec.Command(bin, "demo").Output()
		require.Equal(t, 0, exitCode(err), string(out))
		require.Equal(t, 5, strings.Count(string(out), "\nok  "), string(out))
	})

	t.Run("bad flag", func(t *testing.T) {
		var stderr bytes.Buffer
		cmd := exec.Command(bin, "send", "-frobnicate")
		cmd.Stderr = &stderr
		require.Equal(t, 2, exitCode(cmd.Run()))
		require.Equal(t, "eachhook send: flag provided but not defined: -frobnicate; run 'eachhook send -h' for its flags and examples\n", stderr.String())
	})

	t.Run("sign from stdin", func(t *testing.T) {
		body := eachhooktest.SuccessBody(seedID)
		cmd := exec.Command(bin, "sign")
		cmd.Env = append(os.Environ(), "EACHHOOK_SECRET=whsec_bin")
		cmd.Stdin = bytes.NewReader(body)
		out, err := cmd.Output()
		require.NoError(t, err)
		h := eachhooktest.Headers("whsec_bin", body, eachhooktest.BodyScheme, time.Time{})
		require.Equal(t, "Content-Type: application/json\nX-Webhook-Signature: "+h.Get("X-Webhook-Signature")+"\n", string(out))
	})

	t.Run("listen stops on SIGINT", func(t *testing.T) {
		if runtime.GOOS == "windows" {
			t.Skip("no SIGINT on Windows")
		}
		cmd := exec.Command(bin, "listen", "-addr", "127.0.0.1:0", "-secret", "whsec_bin")
		stderr, err := cmd.StderrPipe()
		require.NoError(t, err)
		var stdout bytes.Buffer
		cmd.Stdout = &stdout
		require.NoError(t, cmd.Start())
		defer cmd.Process.Kill()

		line, err := bufio.NewReader(stderr).ReadString('\n')
		require.NoError(t, err)
		m := regexp.MustCompile(`receiving on (http://\S+)`).FindStringSubmatch(line)
		require.NotNil(t, m, line)

		r := runCmd(t, runOpts{}, "send", "-url", m[1], "-secret", "whsec_bin", "-id", "bin-1")
		require.Equal(t, 0, r.code, r.stdout)

		require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
		err = cmd.Wait()
		var ee *exec.ExitError
		require.False(t, errors.As(err, &ee), "listen exits 0 on SIGINT: %v", err)
		require.Contains(t, stdout.String(), "success bin-1")
	})
}
