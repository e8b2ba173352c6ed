#!/usr/bin/env bash
# Runs every test of every module in go.work, on a machine that may never
# have built the repository:
#
#	./test.sh                 # every test, once
#	./test.sh -race -count=3  # extra flags go to `go test`
#	EACHHOOK_TEST_FLAGS=-race ./test.sh
#
# The Redis and Postgres adapter tests need those servers. With
# EACHHOOK_REDIS_ADDR and EACHHOOK_POSTGRES_DSN both set, it uses them;
# otherwise, as root (or with passwordless sudo) on a machine with apt-get,
# it installs and starts both on 127.0.0.1 by sourcing .ci/services.sh;
# otherwise their tests skip (and, under CI=true, fail).
#
# The benchmark module's comparison with peer libraries (go-github,
# stripe-go, svix, standard-webhooks) is behind the "peers" build tag, so
# it is not built and they are not downloaded; bench/run.sh and .ci/run
# build it.
#
# The output is each package's result, the output of every failure, and
# then the summary, whose first line CI reads:
#
#	eachhook: 812 passed, 0 failed, 3 skipped
#	skipped for want of: redis 0, postgres 0, other 3 (...)
#
# Tests, subtests, examples and fuzz seeds each count once. The exit
# status is 1 if any failed.
set -uo pipefail
cd "$(dirname "$0")"
start=$(date +%s)

if [ -z "${EACHHOOK_REDIS_ADDR:-}" ] || [ -z "${EACHHOOK_POSTGRES_DSN:-}" ]; then
  if command -v apt-get >/dev/null && { [ "$(id -u)" -eq 0 ] || sudo -n true 2>/dev/null; }; then
    user_redis=${EACHHOOK_REDIS_ADDR:-} user_pg=${EACHHOOK_POSTGRES_DSN:-}
    # shellcheck source=.ci/services.sh
    if ! source .ci/services.sh; then
      echo "test.sh: could not start Redis and Postgres: their tests will skip"
    fi
    # A server the caller named wins over the one started here.
    [ -n "$user_redis" ] && export EACHHOOK_REDIS_ADDR=$user_redis
    [ -n "$user_pg" ] && export EACHHOOK_POSTGRES_DSN=$user_pg
  else
    echo "test.sh: not root, no EACHHOOK_REDIS_ADDR/EACHHOOK_POSTGRES_DSN: tests that need a server you did not name skip" \
      "(defaults 127.0.0.1:6379 and postgres://eachhook:eachhook@127.0.0.1:5432/eachhook)"
  fi
fi

# The durable test that slow callbacks are never taken over runs 65 s of
# callbacks; it runs here unless EACHHOOK_DURABLE_SLOW=0, so that the
# whole suite runs, skipping nothing, on a machine that has the servers.
export EACHHOOK_DURABLE_SLOW="${EACHHOOK_DURABLE_SLOW:-1}"

# Every module of go.work, by its module path.
patterns=()
for dir in $(go work edit -json | sed -n 's/.*"DiskPath": "\(.*\)".*/\1/p'); do
  patterns+=("$(sed -n 's/^module[[:space:]]*//p' "$dir/go.mod")/...")
done

# Built, not run with `go run`, which would add a line after the summary.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/testsummary" ./.ci/testsummary || exit 1

# shellcheck disable=SC2086 # EACHHOOK_TEST_FLAGS is a list of flags
go test -json ${EACHHOOK_TEST_FLAGS:-} "$@" "${patterns[@]}" 2>&1 | "$tmp/testsummary" -since "$start"
