#!/usr/bin/env bash
# Checks the README's "Install" commands: in a new module outside the
# repository, it depends on the core and on every adapter of this clone
# and on the reconciler's module (eachloop) with `go mod edit -replace` and
# `go get ...@v0.0.0`, builds a main that imports them all, and runs
# `go install ./cmd/eachhook` from the clone (with its go.work: the command
# is a module of its own).
# Run by .ci/run; it can also be run on its own.
set -euo pipefail
clone=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOWORK=off # a new module outside the repository sees no go.work
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

mkdir "$work/app"
cd "$work/app"
go mod init example.com/app >/dev/null 2>&1

# The README's commands, for the core and each adapter.
go mod edit -replace github.com/eachhook/eachhook="$clone"
for m in redisstore pgstore durable eachhookotel eachloop; do
  go mod edit -replace "github.com/eachhook/eachhook/$m=$clone/$m"
done
go get github.com/eachhook/eachhook@v0.0.0 \
  github.com/eachhook/eachhook/redisstore@v0.0.0 \
  github.com/eachhook/eachhook/pgstore@v0.0.0 \
  github.com/eachhook/eachhook/durable@v0.0.0 \
  github.com/eachhook/eachhook/eachhookotel@v0.0.0 \
  github.com/eachhook/eachhook/eachloop@v0.0.0

cat > main.go <<'GO'
// Command app checks that the core and every adapter can be depended on.
package main

import (
	"fmt"
	"os"

	"github.com/eachhook/eachhook"
	"github.com/eachhook/eachhook/durable"
	"github.com/eachhook/eachhook/eachhookotel"
	"github.com/eachhook/eachhook/eachloop"
	"github.com/eachhook/eachhook/eachloop/eachlabs"
	"github.com/eachhook/eachhook/eachloop/pgexpect"
	"github.com/eachhook/eachhook/eachloop/redisexpect"
	"github.com/eachhook/eachhook/eachloop/sqliteexpect"
	"github.com/eachhook/eachhook/pgstore"
	"github.com/eachhook/eachhook/redisstore"
)

func main() {
	h, err := eachhook.New(eachhook.WithSecret("whsec_demo"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	_ = h
	_ = durable.Config{}
	_ = eachhookotel.New
	_ = pgstore.New
	_ = redisstore.New
	_ = eachloop.New
	_ = eachlabs.NewClient
	_ = pgexpect.New
	_ = redisexpect.New
	_ = sqliteexpect.New
	fmt.Println("ok")
}
GO
go mod tidy
go build -o app .
[ "$(./app)" = ok ]

# The command, from the clone.
(cd "$clone" && GOWORK= GOBIN="$work/bin" go install ./cmd/eachhook)
[ "$(printf '{"id":"a"}' | "$work/bin/eachhook" sign -secret whsec_demo | grep -c '^X-Webhook-Signature: ')" = 1 ]
echo "install-check: the README's install commands work in a new module outside the repository"
