#!/usr/bin/env bash
# Runs inside `python -m kimberly.runtime exec`, so the real servers are up.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
echo "== ruff" && ruff check . && ruff format --check .
echo "== mypy" && mypy .
echo "== pytest" && pytest "$@"
# Schemathesis against a live test server: the OpenAPI schema must tell the truth.
echo "== contract" && pytest -m contract tests/contract
