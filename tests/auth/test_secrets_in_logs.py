"""Issue 3 acceptance: no key appears in any log the test session wrote.

Runs last in tests/auth (file order), after every gateway here has served, been refused and
lost its Redis; it also reads the logs other tests wrote in this session under LOG_DIR.
"""

from __future__ import annotations

from proxy_config.keys import key_digest, key_id
from tests.auth.conftest import TEST_KEYS, session_logs
from tests.harness import DEEPSEEK_KEY, MASTER_KEY


def test_no_key_appears_in_any_log_of_the_session(limited, second):
    logs = session_logs()
    names = {path.name.rsplit("-", 1)[0] for path in logs}
    assert {"auth-limited", "auth-second"} <= names
    secrets = (*TEST_KEYS, MASTER_KEY, DEEPSEEK_KEY)
    leaks = {}
    for path in logs:
        text = path.read_text(errors="replace")
        found = [key_id(key_digest(s)) for s in secrets if s in text]
        if found:
            leaks[path.name] = found
    assert leaks == {}
