"""Per-key monthly cloud budgets (config.yaml: `hooks.budgets.instance`, listed before
`hooks.routing.instance`).

A client key's budget is `cloud_budget_usd` in the keys config, or KEY_CLOUD_BUDGET_USD.
Spend is the ledger's cost of the key's cloud-served requests (hooks.ledger charges each
finished record), counted per UTC month in Redis (hooks.spend), so every worker and gateway
instance on that Redis sees the same spend; a new month is a new counter (the reset).

pre-call: for a key with a budget, read its spend; note what is left (the
`x-gateway-budget-remaining-usd` header); when nothing is left set `ctx.cloud_denied =
Reason.BUDGET`, so the routing policy serves the request locally (reason `budget`) or refuses
it (a named cloud model, a prompt no local model holds) with 429 `budget_exceeded`, which
hooks.routing words with when the budget resets.

How it fails: open. Without REDIS_URL, or while Redis fails (the rate limiter's connection and
outage handling, hooks.ratelimit), spend counts in this process only, from zero, so during an
outage a key can spend up to its budget once more per worker. Any other error is logged and
the request goes on unbudgeted. A charge lands after the response, so requests already running
when the budget runs out still finish on the cloud: a budget can be overshot by the cost of
the requests in flight.
"""

from __future__ import annotations

import logging
import time

from litellm.integrations.custom_logger import CustomLogger

from custom_router.policy import Reason
from hooks import context
from hooks.ratelimit import get_limiter
from hooks.routing import ROUTED_CALL_TYPES
from hooks.spend import spent_usd

log = logging.getLogger("gateway.budgets")

class BudgetHook(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        if call_type not in ROUTED_CALL_TYPES:
            return data
        ctx = context.current.get()
        key = getattr(ctx, "client_key", None)  # set by hooks.auth for client keys
        if key is None or key.budget is None:
            return data
        try:
            now = time.time()
            spent = await spent_usd(get_limiter(), key.digest, now)
        except Exception:  # fail open: no budget is better than no answer
            log.exception("budget check failed")
            return data
        ctx.budget_key = key.digest
        ctx.budget_remaining = max(key.budget - spent, 0.0)
        if spent >= key.budget and ctx.cloud_denied is None:  # local-only is stricter: it stays
            ctx.cloud_denied = Reason.BUDGET
            log.info("key %s (%s) is over its cloud budget: $%.2f of $%.2f", key.name, key.id, spent, key.budget)
        return data


instance = BudgetHook()
