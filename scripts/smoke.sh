#!/usr/bin/env bash
# Smoke test of a running deployment (the CD pipeline runs it after each deploy):
#   scripts/smoke.sh https://staging.kimberly.example.com
# Readiness must answer 200; with SMOKE_EMAIL and SMOKE_PASSWORD set (a
# dedicated account of that deployment), a login must return a token that
# reads /v1/user back. Exit status 0 only if every step passed.
set -euo pipefail
base="${1:?usage: smoke.sh BASE_URL}"
base="${base%/}"
curl_json() { curl --fail-with-body --silent --show-error --max-time 15 "$@"; }

echo "== readiness: $base/v1/health/ready"
for attempt in 1 2 3 4 5 6; do
  if body="$(curl_json "$base/v1/health/ready")"; then
    echo "$body"
    break
  fi
  [ "$attempt" = 6 ] && { echo "not ready" >&2; exit 1; }
  sleep 10
done

if [ -z "${SMOKE_EMAIL:-}" ] || [ -z "${SMOKE_PASSWORD:-}" ]; then
  echo "SMOKE_EMAIL/SMOKE_PASSWORD unset: login skipped" >&2
  [ -z "${SMOKE_REQUIRE_LOGIN:-}" ] || exit 1
  exit 0
fi
echo "== login as $SMOKE_EMAIL"
payload="$(python3 -c 'import json, os; print(json.dumps({"email": os.environ["SMOKE_EMAIL"], "password": os.environ["SMOKE_PASSWORD"]}))')"
token="$(curl_json -X POST -H 'Content-Type: application/json' --data "$payload" "$base/v1/login" \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')"
curl_json -H "Authorization: Bearer $token" "$base/v1/user" >/dev/null
echo "login OK"
