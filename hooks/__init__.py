"""Thin LiteLLM adapters: callbacks that apply the routing policy, and the state they read."""
