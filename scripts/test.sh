#!/usr/bin/env bash
# Set up everything and run the whole test suite (this is what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
export GATEWAY_TEST_LOGS="${GATEWAY_TEST_LOGS:-$(mktemp -d /tmp/gateway-test-logs.XXXXXX)}"
.venv/bin/ruff check custom_router litellm_compat hooks proxy_config gateway emulators  # pyproject [tool.ruff]
exec .venv/bin/python -m pytest "$@"
