"""`python -m litellm_compat`: which shims, wordings and private attributes hold on the installed LiteLLM.

Exit status 0 when all hold, 1 otherwise (scripts/try-litellm.sh prints this table)."""

import os
import sys
from importlib.metadata import version

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from litellm_compat import shims, wording  # noqa: E402  (after the cost-map switch)

rows = [("shim", o.name, None if o.applied else o.detail) for o in shims.check_all()]
rows += [("wording", w.name, wording.wording_problem(w)) for w in wording.WORDINGS]
rows += [("private", target.rpartition(":")[2], wording.private_attribute_problem(target, names))
         for target, names in wording.PRIVATE_ATTRIBUTES.items()]
print(f"litellm {version('litellm')}")
for kind, name, problem in rows:
    print(f"{'holds' if problem is None else 'BROKEN':<7} {kind:<8} {name}" + (f": {problem}" if problem else ""))
sys.exit(1 if any(problem for _, _, problem in rows) else 0)
