"""Thin LiteLLM adapters: callbacks that apply the routing policy, and the state they read.

Module copies. LiteLLM loads each `hooks.X.instance` that config.yaml names with
`litellm/proxy/types_utils/utils.py:get_instance_fn`: when `hooks/X.py` sits next to the config
file (the repository's own config.yaml), it executes the file as a *fresh module object* with
`importlib.util.spec_from_file_location`, not the `hooks.X` in `sys.modules`; a module named twice
(`hooks.auth.instance` and `hooks.auth.user_api_key_auth`) is executed twice. With a config
elsewhere it imports the module normally. So state that changes (the runtime and its backend
monitor, the limiter, the ledger, the in-flight leases and speeds, the metrics, the request context)
lives in modules the copies import normally (`hooks.runtime`, `hooks.inflight`, `hooks.ledger`,
`hooks.metrics`, `hooks.context`, ...), which every copy then shares. What a callback module caches
itself is read-only (hooks.auth's key table and route check, hooks.responses' store handle): a copy
costs a second load of it, never two diverging states.
"""
