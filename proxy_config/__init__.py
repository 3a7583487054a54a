"""The gateway's settings, config validation, app assembly and CLI."""

import os

# LiteLLM fetches its cost map from GitHub when it is imported unless this is set; our
# hosts may have no internet, and config.yaml carries every price we use.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
