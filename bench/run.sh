#!/usr/bin/env bash
# Runs every eachhook benchmark against the alternatives and writes
# RESULTS.md beside this script: signature verification against peer
# libraries, the in-process receive path, end-to-end load over loopback, and
# dedupe memory. Takes about 6 minutes on 2 cores. Raw outputs go to raw/.
#
#   bench/run.sh              # the full run
#   ROUNDS=3 bench/run.sh     # fewer rounds, quicker and noisier
set -euo pipefail
cd "$(dirname "$0")"

ROUNDS="${ROUNDS:-20}"         # rounds of the verification and receive benchmarks
MEM_ROUNDS="${MEM_ROUNDS:-5}"  # rounds of the dedupe memory benchmark
BENCHTIME="${BENCHTIME:-100ms}"
E2E_DURATION="${E2E_DURATION:-3s}"
E2E_PAIRS="${E2E_PAIRS:-3}"
BENCHSTAT_VERSION=v0.0.0-20260908200009-22c9c6c9d4da

start=$(date +%s)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p raw

echo "== building benchstat, the test binary and the load generator"
GOBIN="$tmp" go install "golang.org/x/perf/cmd/benchstat@$BENCHSTAT_VERSION"
benchstat="$tmp/benchstat"
go test -tags peers -c -o "$tmp/bench.test" .
go build -o "$tmp/e2e" ./cmd/e2e
go build -o "$tmp/report" ./cmd/report

# Rounds run every benchmark once in turn, so that a change in the machine's
# load during the run hits every library alike.
: >raw/verify.txt
: >raw/receive.txt
: >raw/memory.txt
for i in $(seq "$ROUNDS"); do
  echo "== round $i/$ROUNDS: verification and receive path"
  "$tmp/bench.test" -test.run='^$' -test.bench='^BenchmarkVerify$' -test.benchmem -test.benchtime="$BENCHTIME" >>raw/verify.txt
  "$tmp/bench.test" -test.run='^$' -test.bench='^BenchmarkReceive$' -test.benchmem -test.benchtime="$BENCHTIME" >>raw/receive.txt
done
for i in $(seq "$MEM_ROUNDS"); do
  echo "== round $i/$MEM_ROUNDS: dedupe memory"
  "$tmp/bench.test" -test.run='^$' -test.bench='^BenchmarkDedupeMemory$' -test.benchtime=1x >>raw/memory.txt
done
echo "== end to end over 127.0.0.1"
"$tmp/e2e" -duration="$E2E_DURATION" -pairs="$E2E_PAIRS" >raw/e2e.md

for part in verify receive memory; do
  "$benchstat" raw/$part.txt >raw/$part.benchstat.txt
  "$benchstat" -format csv raw/$part.txt 2>/dev/null | "$tmp/report" $part >"$tmp/$part.md"
done
elapsed=$(($(date +%s) - start))

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
{
  cat <<EOF2
# eachhook benchmark results

Produced by \`bench/run.sh\` (ROUNDS=$ROUNDS MEM_ROUNDS=$MEM_ROUNDS BENCHTIME=$BENCHTIME E2E_DURATION=$E2E_DURATION E2E_PAIRS=$E2E_PAIRS) in ${elapsed}s.

- Date: $(date -u '+%Y-%m-%d %H:%M UTC')
- Machine: $(uname -sm), $cpu, $(nproc) cores, $mem
- Go: $(go version | cut -d' ' -f3-)
- Peers: $(go list -m -f '{{.Path}} {{.Version}}' github.com/google/go-github/v89 github.com/stripe/stripe-go/v82 github.com/svix/svix-webhooks github.com/standard-webhooks/standard-webhooks/libraries | paste -sd, - | sed 's/,/, /g')
- Benchmarks: \`bench.test -test.bench=... -test.benchmem -test.benchtime=$BENCHTIME\`, repeated in $ROUNDS interleaved rounds (memory: $MEM_ROUNDS rounds of \`-test.benchtime=1x\`); medians and 95% confidence intervals by benchstat $BENCHSTAT_VERSION, ratios of those medians. Raw outputs and benchstat's own tables are in [raw/](raw/).

The machine's 2 cores were shared with other jobs while this ran, so absolute
numbers are noisy; compare within a table, where every row ran interleaved
with the others.

## 1. Signature verification

Each library verifies one valid signature of the same body in its own format:
eachhook the timestamped scheme (\`sha256=\` hex of HMAC over
\`<timestamp>.<body>\`, with the tolerance check) and, as \`eachhook-body\`, the
original scheme (hex HMAC of the body); go-github \`ValidateSignature\`
(\`sha256=\` hex); stripe-go \`webhook.ValidatePayload\` (\`t=...,v1=...\`);
svix and standard-webhooks \`Verify\` (base64 HMAC over \`id.timestamp.body\`).
The floor is a pre-keyed HMAC-SHA256 with \`Reset\`, \`Write\`, \`Sum\`, plus a hex
decode and \`hmac.Equal\`, over the body alone.

$(cat "$tmp/verify.md")

## 2. Receive path, in process

One delivery of the seed success payload (253 bytes, a fresh id each time,
original signing scheme) through \`ServeHTTP\`, with a no-op callback. The time
includes the work each handler starts in the background: the timer stops only
once every callback has run. \`hand-written\` is the handler the spec's FastAPI
example suggests, written in Go the obvious way (\`io.ReadAll\`, \`hmac.New\`,
\`json.Unmarshal\` into a map, \`go callback(payload)\`), without dedupe; \`bare\`
only reads the body. eachhook runs with its defaults (4 workers, queue of
1024); a 503 from a full queue is retried after 10 µs and counted.

$(cat "$tmp/receive.md")

## 3. End to end over loopback

The \`e2e\` command starts each receiver as its own process on 127.0.0.1 and
loads it from another process with pre-signed deliveries (timestamped scheme,
300-byte bodies), alternating eachhook and bare runs. \`eachhook\` is the
example receiver (\`eachhook.New(WithSecret(...))\`, \`OnSuccess\`, behind a
\`ServeMux\`); \`bare\` is a \`net/http\` server whose handler reads the body and
answers 200. "receiver CPU per request" is the receiver process's user+system
CPU time divided by the requests it answered, which the machine's other load
disturbs much less than req/s and latency do.

$(cat raw/e2e.md)

## 4. Dedupe memory

Heap per id with 1,000,000 distinct 36-character ids claimed (live heap after
GC, minus the heap before the store was made), then the heap after the clock
passed the TTL and \`Sweep\` ran, relative to the heap before. The
\`MemoryStore\` runs on an injected clock (\`NewMemoryStore(24h, now)\`). The
plain \`map[string]int64\` and \`sync.Map\` rows are for scale; their "sweep"
drops every entry.

$(cat "$tmp/memory.md")
EOF2
} >RESULTS.md
echo "== wrote RESULTS.md in ${elapsed}s"
