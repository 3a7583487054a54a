#!/usr/bin/env bash
# Regenerate requirements.lock from a clean venv holding only pyproject's runtime pins.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/pip" install -q --upgrade pip
"$tmp/venv/bin/pip" install -q .
{
  echo "# Exact versions of every runtime package, transitive ones included (pip install -r)."
  echo "# Direct dependencies and why: pyproject.toml."
  echo "# Regenerate on purpose after changing a pin: scripts/lock.sh"
  "$tmp/venv/bin/pip" freeze --exclude-editable | grep -v '^unified-ai-gateway'
} > requirements.lock
rm -rf "$tmp"
echo "requirements.lock updated"
