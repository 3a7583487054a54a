"""The gateway's benchmark: direct calls, vanilla LiteLLM (plain and tuned) and this gateway,
measured interleaved in one invocation against an instant canned backend (nginx).

Run `python -m bench` (or `gateway bench`); results: bench/RESULTS.md, docs/performance.md.
Modules: backend (canned nginx), targets (server processes), load (wrk and the stream probe),
run (orchestration), report (medians, ratios, targets, tables), routing (decision micro-benchmark).
"""
