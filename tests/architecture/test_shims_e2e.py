"""A real `gateway serve`: every LiteLLM shim applied, said in the startup log and in /metrics."""

from __future__ import annotations

from litellm_compat.shims import SHIMS
from tests.observability.helpers import scrape


def test_every_shim_applies_and_says_so_in_metrics_and_log(gateway):
    samples = scrape(gateway)
    applied = {dict(labels)["shim"]: value for (name, labels), value in samples.items()
               if name == "gateway_litellm_shim_applied"}
    assert applied == {shim.name: 1.0 for shim in SHIMS}
    log = gateway.log()
    assert "litellm_compat before startup: applied malloc-arenas middlewares(-" in log
    assert "; not applied: none" in log
    assert "skipped, its target changed" not in log
