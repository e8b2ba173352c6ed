// Package bench measures eachhook against the alternatives a user would
// otherwise pick: other libraries' signature verifiers, a hand-written
// net/http handler, and a bare net/http server. The benchmarks live in this
// package's tests; the end-to-end load test is the e2e command, which uses
// the load generator and the receivers defined here. run.sh runs everything
// and writes RESULTS.md.
package bench
