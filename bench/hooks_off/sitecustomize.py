"""Loaded only by the benchmark's `ours-hooks-off` server (bench.targets puts this directory on
PYTHONPATH, so every process of that server, uvicorn workers included, runs it at start).

It turns off the ledger and the metrics of gateway.app by making `hooks.ledger.track`
return None: no record, no metrics observation, no request log line. The other hooks (routing,
usage, auth, streams) are removed from that server's config.yaml by bench.targets.hooks_off.
"""

import hooks.ledger

hooks.ledger.track = lambda ctx, scope: None
