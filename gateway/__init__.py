"""The running service: the ASGI app LiteLLM runs behind (app), its front door (gate), error
layer (errors), CORS (cors), logs (logs), the ledger report (report) and the `gateway` command (cli).

It imports proxy_config (what the operator configures) and hooks (LiteLLM's callbacks); neither
imports it back (tests/architecture/test_imports.py).
"""

import proxy_config  # noqa: F401  (first: it sets LITELLM_LOCAL_MODEL_COST_MAP before anything imports litellm)
