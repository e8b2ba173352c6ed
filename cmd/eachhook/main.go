// Command eachhook receives, sends, signs and verifies each::labs prediction
// webhooks, and reads their delivery history from the each::labs API. It is
// built on package eachhook and shows the library at work:
//
//	go run ./cmd/eachhook demo
//
// Install it from a clone of the repository (the module is not published
// yet; see the README's Install section) with
//
//	go install ./cmd/eachhook
//
// Subcommands:
//
//	demo      run a receiver and deliver five webhooks to it, checking each outcome
//	listen    run a receiver that prints each verified event and each refused request
//	send      sign and POST a webhook like the each::labs sender, with its retries
//	sign      print the headers the sender would set for a body
//	verify    check a signature and say exactly why it does not match
//	history   show a webhook's delivery attempts from the each::labs API
//	replay    send recorded deliveries again from the each::labs history
//	forward   forward new deliveries from the each::labs history to a local URL
//
// Run "eachhook COMMAND -h" for a command's flags and examples.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

const mainUsage = `eachhook receives, sends, signs and verifies each::labs prediction webhooks.

usage: eachhook COMMAND [flags]

commands:
  demo      run a receiver and deliver five webhooks to it, checking each outcome
  listen    run a receiver that prints each verified event and each refused request
  send      sign and POST a webhook like the each::labs sender, with its retries
  sign      print the headers the sender would set for a body
  verify    check a signature and say exactly why it does not match
  history   show a webhook's delivery attempts from the each::labs API
  replay    send recorded deliveries again from the each::labs history
  forward   forward new deliveries from the each::labs history to a local URL

Run "eachhook COMMAND -h" for a command's flags and examples.

examples:
  go run ./cmd/eachhook demo      # from a clone of the repository
  eachhook listen -secret whsec_123
  eachhook send -url http://localhost:8080/webhooks/prediction -secret whsec_123
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the command line args (without the program name), reading
// standard input and stopping a listener at SIGINT or SIGTERM, and returns
// the exit status: 0 for success, 1 for a failure, 2 for bad usage.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a := &app{ctx: ctx, stdin: os.Stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now}
	return a.run(args)
}

// app is one run of the command, with everything it touches outside the
// process, so that tests can supply their own.
type app struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	now    func() time.Time
	ready  func(addr string) // called by listen once it accepts connections; may be nil
}

func (a *app) run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(a.stderr, mainUsage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "demo":
		return a.demo(rest)
	case "listen":
		return a.listen(rest)
	case "send":
		return a.send(rest)
	case "sign":
		return a.sign(rest)
	case "verify":
		return a.verify(rest)
	case "history":
		return a.history(rest)
	case "replay":
		return a.replay(rest)
	case "forward":
		return a.forward(rest)
	case "help", "-h", "-help", "--help":
		if len(rest) > 0 && rest[0] != "help" && !strings.HasPrefix(rest[0], "-") {
			return a.run([]string{rest[0], "-h"})
		}
		fmt.Fprint(a.stdout, mainUsage)
		return 0
	}
	fmt.Fprintf(a.stderr, "eachhook: unknown command %q; run 'eachhook -h' for the commands\n", cmd)
	return 2
}

// flagSet returns a FlagSet for a subcommand whose -h prints usage, the
// flags and examples.
func (a *app) flagSet(name, usage, examples string) *flag.FlagSet {
	fs := flag.NewFlagSet("eachhook "+name, flag.ContinueOnError)
	fs.SetOutput(a.stderr)
	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprintf(w, "%s\n\nflags:\n", usage)
		fs.PrintDefaults()
		fmt.Fprintf(w, "\n%s\n", examples)
	}
	return fs
}

// parse parses args; when it reports false the command must return code:
// 0 after -h (usage went to stdout), 2 after a bad flag (one line on
// stderr: the error and where to find the usage).
func (a *app) parse(fs *flag.FlagSet, args []string) (code int, ok bool) {
	for _, arg := range args {
		if arg == "--" {
			break
		}
		if arg == "-h" || arg == "-help" || arg == "--help" || arg == "--h" {
			fs.SetOutput(a.stdout)
			fs.Usage()
			return 0, false
		}
	}
	// The flag package would print the error and the whole usage: print
	// the error alone, in one line.
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return a.usageError(fs, "%v", err), false
	}
	return 0, true
}

// usageError prints a usage error in one line, with the command that shows
// the usage, and returns 2.
func (a *app) usageError(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(a.stderr, "%s: %s; run '%s -h' for its flags and examples\n", fs.Name(), fmt.Sprintf(format, args...), fs.Name())
	return 2
}
