"""Test emulators for the gateway's upstreams: Ollama and DeepSeek.

Real HTTP servers that behave like the real services (docs/emulators.md),
with deterministic answers, switchable faults (`POST /_emulator/fault`) and
realism switches (`POST /_emulator/config`: runner slots, token rate,
context length, ...).  Use `emulators.ollama.create_app()` /
`emulators.deepseek.create_app()` with `serve_in_thread`, or run
`python -m emulators.ollama` / `python -m emulators.deepseek`.
The submodules are not imported here so `python -m` runs cleanly.
"""

from emulators._common import (
    REASONING_TEXT, RunningServer, count_prompt_tokens, make_reply, serve_in_thread,
)

__all__ = ["REASONING_TEXT", "RunningServer", "count_prompt_tokens", "make_reply",
           "serve_in_thread"]
