#!/usr/bin/env bash
# A look at River UI in a real browser; not run by CI (main_test.go checks
# the same through the UI's HTTP API). It starts this example on a fresh
# Postgres schema, sends it three deliveries that complete and two whose
# callbacks fail both attempts (their jobs are discarded: the dead
# letters), waits until River UI's API counts them, then opens the UI's
# discarded jobs, and one of them, in headless Chromium (driven by
# screenshot.mjs over the DevTools protocol, which answers the basic-auth
# challenge as a user answers the login dialog) and saves two screenshots.
#
#   apt-get install -y chromium        # Debian's package
#   ./screenshot.sh [out.png]          # default riverui-discarded.png and riverui-discarded-job.png
#
# Needs psql, openssl, curl, Node 20+ and chromium; the database is
# EACHHOOK_POSTGRES_DSN (default: the local eachhook database).
set -euo pipefail
out_list="$(realpath -m "${1:-riverui-discarded.png}")"
out_job="${out_list%.png}-job.png"
mkdir -p "$(dirname "$out_list")"
cd "$(dirname "$0")"
export PGOPTIONS="-c client_min_messages=warning"

dsn="${EACHHOOK_POSTGRES_DSN:-postgres://eachhook:eachhook@127.0.0.1:5432/eachhook?sslmode=disable}"
schema="eachhook_riverui_screenshot"
secret="whsec_screenshot"
user="admin"
password="screenshot-$RANDOM$RANDOM"
port="${PORT:-18089}"
base="http://127.0.0.1:$port"

tmp=$(mktemp -d)
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  psql -q "$dsn" -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

psql -q "$dsn" -c "DROP SCHEMA IF EXISTS $schema CASCADE; CREATE SCHEMA $schema" >/dev/null
go build -o "$tmp/receiver" .
DATABASE_URL="$dsn" EACHHOOK_SECRET="$secret" RIVERUI_USER="$user" RIVERUI_PASSWORD="$password" \
  "$tmp/receiver" -addr "127.0.0.1:$port" -schema "$schema" -max-attempts 2 -fail-prefix fail_ \
  2>"$tmp/receiver.log" &
pid=$!

for _ in $(seq 300); do
  curl -fsS -o /dev/null "$base/healthz" 2>/dev/null && break
  sleep 0.1
done
curl -fsS -o /dev/null "$base/healthz"

# Without credentials the UI answers 401.
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/riverui/")
echo "River UI without credentials: $code"
[ "$code" = 401 ]

for id in ok_1 ok_2 ok_3 fail_1 fail_2; do
  body="{\"id\":\"$id\",\"status\":\"success\",\"output\":\"https://storage.example.com/predictions/$id/image.jpg\",\"metrics\":{\"predict_time\":12.5,\"cost\":0.05}}"
  sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" -hex | sed 's/^.*= //')
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$base/webhooks/prediction" \
    -H 'Content-Type: application/json' -H "X-Webhook-Signature: $sig" --data-binary "$body")
  echo "delivery $id: $code"
  [ "$code" = 200 ]
done

# The failed jobs are retried once (River's backoff: about 1s, then the
# scheduler's next pass) before they are discarded.
states=""
for _ in $(seq 120); do
  states=$(curl -fsS -u "$user:$password" "$base/riverui/api/states")
  if grep -q '"completed":{[^}]*"count":3' <<<"$states" && grep -q '"discarded":{[^}]*"count":2' <<<"$states"; then
    break
  fi
  sleep 0.5
done
echo "River UI states: $states"
grep -q '"discarded":{[^}]*"count":2' <<<"$states"

# The first discarded job's id, for its page with the attempts' errors.
job=$(curl -fsS -u "$user:$password" "$base/riverui/api/jobs?state=discarded&limit=1" | grep -o '"id":[0-9]*' | head -1 | cut -d: -f2)
[ -n "$job" ]

node --experimental-websocket --no-warnings screenshot.mjs "$user" "$password" \
  "$base/riverui/jobs?state=discarded" "eachhook_delivery" "$out_list" \
  "$base/riverui/jobs/$job" "demo failure of" "$out_job"
echo "saved $out_list and $out_job"
