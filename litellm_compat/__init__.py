"""Every coupling to LiteLLM's internals, behind one door.

- `shims`: the registry of runtime patches (`SHIMS`), each with its target and the check of that
  target; `apply`/`after_startup` run them and report one `Outcome` per shim;
- `tuning`: the speed shims themselves; `fixes`: corrections of LiteLLM behaviour;
- `wording`: the LiteLLM error wording and private attributes the gateway reads, with checks.

A top-level package, below both hooks/ and gateway/: the hooks match LiteLLM's wording through it,
and hooks may not import gateway/ (gateway imports hooks). It imports LiteLLM and nothing of ours.
A LiteLLM upgrade shows what broke here, in tests/architecture/test_litellm_compat.py and
scripts/try-litellm.sh; a shim whose target changed is skipped and costs speed, never correctness.
"""
