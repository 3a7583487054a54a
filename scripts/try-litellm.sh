#!/usr/bin/env bash
# Try a LiteLLM release without touching .venv: build a throwaway venv with litellm[proxy]==VERSION and
# the rest of requirements.lock, then print which shims, error wordings and private attributes hold
# (python -m litellm_compat), and run the compatibility tests and an end-to-end subset against it.
#   scripts/try-litellm.sh VERSION [PYTEST_PATHS...]   (default paths: tests/test_gateway_e2e.py tests/routing)
# Exit status: 0 when it installs and every test passes, 1 otherwise, 2 for a refused version.
# What would not install is printed from pip's own report. README "Upgrading LiteLLM" says what to do next.
set -uo pipefail
cd "$(dirname "$0")/.."
VERSION="${1:?usage: scripts/try-litellm.sh VERSION [PYTEST_PATHS...]}"
shift
case "$VERSION" in
  1.82.7|1.82.8) echo "refusing litellm $VERSION: that release on PyPI was malicious (never install it)"; exit 2 ;;
esac
E2E=("$@")
[ ${#E2E[@]} -eq 0 ] && E2E=(tests/test_gateway_e2e.py tests/routing)
VENV="$(mktemp -d "/tmp/try-litellm-$VERSION.XXXXXX")"
[ -n "${KEEP_VENV:-}" ] || trap 'rm -rf "$VENV"' EXIT
PIP=("$VENV/bin/pip" install -q --disable-pip-version-check)
noise() { grep -v -e "^WARNING: Location .* is ignored" -e "Ignored the following versions" "$1" |
          grep -E "ERROR|error:|conflict|requires|No matching|Could not find|depends on|Cannot install" | head -25; }

python3 -m venv "$VENV" || exit 1
grep -vE '^(litellm|litellm-enterprise|litellm-proxy-extras|litellm-proxy)==' requirements.lock > "$VENV/lock.txt"
echo "== litellm[proxy]==$VERSION with the rest of requirements.lock"
if ! "${PIP[@]}" -r "$VENV/lock.txt" "litellm[proxy]==$VERSION" >"$VENV/pip.log" 2>&1; then
  echo "-- does not install with our pins:"; noise "$VENV/pip.log"
  echo "== litellm[proxy]==$VERSION alone (its own choice of dependencies)"
  if ! "${PIP[@]}" "litellm[proxy]==$VERSION" >"$VENV/pip-alone.log" 2>&1; then
    echo "-- does not install from the registry:"; noise "$VENV/pip-alone.log"
    echo "== litellm==$VERSION without the proxy extra: what holds (no tests: the gateway cannot run without it)"
    if "${PIP[@]}" -r "$VENV/lock.txt" "litellm==$VERSION" >"$VENV/pip-bare.log" 2>&1 &&
       "${PIP[@]}" --no-deps -e . >>"$VENV/pip-bare.log" 2>&1; then
      "$VENV/bin/python" -m litellm_compat
    else
      echo "-- litellm==$VERSION does not install with our pins either:"; noise "$VENV/pip-bare.log"
    fi
    echo "RESULT litellm $VERSION: NOT INSTALLABLE (its proxy extra needs what the registry does not have)"
    exit 1
  fi
  echo "-- installed without our pins; the lock would change"
fi
if ! "${PIP[@]}" -r requirements-test.txt >"$VENV/pip-test.log" 2>&1 || ! "${PIP[@]}" --no-deps -e . >>"$VENV/pip-test.log" 2>&1; then
  echo "-- the test tools or the gateway do not install next to it:"; noise "$VENV/pip-test.log"
  echo "RESULT litellm $VERSION: NOT INSTALLABLE with requirements-test.txt"
  exit 1
fi
"$VENV/bin/pip" show litellm litellm-enterprise litellm-proxy-extras litellm-proxy 2>/dev/null | grep -E "^(Name|Version):" | paste - - | sed 's/^/   /'

echo "== what holds (python -m litellm_compat)"
"$VENV/bin/python" -m litellm_compat
holds=$?
echo "== compatibility tests (tests/architecture) and end-to-end: ${E2E[*]}"
export GATEWAY_TEST_LOGS="${GATEWAY_TEST_LOGS:-$(mktemp -d /tmp/gateway-test-logs.XXXXXX)}"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/architecture "${E2E[@]}" 2>&1 | tail -25
tests=${PIPESTATUS[0]}
if [ "$holds" = 0 ] && [ "$tests" = 0 ]; then
  echo "RESULT litellm $VERSION: installs, every shim and wording holds, the tests pass"
  exit 0
fi
echo "RESULT litellm $VERSION: installs; $([ "$holds" = 0 ] && echo "every shim and wording holds" || echo "some shims/wordings are BROKEN (above)"); tests $([ "$tests" = 0 ] && echo pass || echo FAIL)"
exit 1
