#!/usr/bin/env bash
# Set up a fresh Debian/Ubuntu machine for the gateway: system packages, the venv with
# exact pins, and the `gateway` command. Idempotent. Run as root (or with sudo available).
#   scripts/setup.sh          runtime: what `gateway serve` needs
#   scripts/setup.sh --test   plus the test tooling (PostgreSQL for the ledger test, debootstrap
#                             and systemd-analyze for the Ansible converge, wrk for the bench
#                             smoke test, iproute2 (ss) for the nginx keep-alive test, ansible, schemathesis)
set -euo pipefail
cd "$(dirname "$0")/.."
TEST=0; [ "${1:-}" = "--test" ] && TEST=1

APT_PACKAGES=(python3 python3-venv redis-server nginx openssl curl)
[ "$TEST" = 1 ] && APT_PACKAGES+=(postgresql debootstrap systemd zstd wrk iproute2)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -r requirements.lock
[ "$TEST" = 1 ] && .venv/bin/pip install -q -r requirements-test.txt
.venv/bin/pip install -q --no-deps -e .
[ -f .env ] || { cp .env.example .env; sed -i "s/^LITELLM_MASTER_KEY=.*/LITELLM_MASTER_KEY=sk-$(openssl rand -hex 32)/" .env; echo "created .env with a fresh LITELLM_MASTER_KEY"; }
.venv/bin/gateway check || true
echo "setup done: start with  .venv/bin/gateway serve   (or try  .venv/bin/gateway demo)"
