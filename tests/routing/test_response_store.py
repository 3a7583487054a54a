"""hooks.response_store on both of the ledger's databases (SQLite, PostgreSQL): a key reads only its
own responses, retention hides and deletes old ones, delete removes one. And custom_router.facts
measures Responses and completions bodies the way it measures chat (plain data, no server)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from custom_router.facts import conversation, request_facts
from hooks import response_store
from hooks.ledger_store import PostgresStore, SqliteStore
from hooks.response_store import ResponseStore, StoreUnavailable
from tests.observability.conftest import postgres_url  # noqa: F401  (a fixture)

BODY = {"id": "resp_1", "object": "response", "output": [{"type": "message", "role": "assistant",
                                                          "content": [{"type": "output_text", "text": "Hi"}]}]}
TURN = [{"role": "user", "content": "Hello"}]


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path: Path) -> ResponseStore:
    if request.param == "sqlite":
        return ResponseStore(SqliteStore(tmp_path / "ledger.sqlite3"), retention_days=30)
    return ResponseStore(PostgresStore(request.getfixturevalue("postgres_url")), retention_days=30)


def test_a_key_reads_its_own_response_and_no_other_keys(store):
    async def run():
        await store.save("key-a", BODY, TURN)
        await store.save("key-a", BODY, [])  # the same id again: the first one stays
        return await store.get("key-a", "resp_1"), await store.get("key-b", "resp_1"), await store.get("key-a", "x")

    mine, theirs, unknown = asyncio.run(run())
    assert (mine.body, mine.conversation) == (BODY, TURN)
    assert theirs is None and unknown is None


def test_retention_hides_old_responses_and_deletes_them_on_a_write(store, monkeypatch):
    async def run():
        await store.save("key-a", BODY, TURN)
        later = time.time() + 31 * 86400
        monkeypatch.setattr(response_store.time, "time", lambda: later)
        hidden = await store.get("key-a", "resp_1")
        store._purged = 0.0
        await store.save("key-a", {**BODY, "id": "resp_2"}, TURN)  # purges what is past the retention
        rows = store._run(lambda: store._execute(f"SELECT id FROM {response_store.TABLE}", ()).fetchall())
        return hidden, [row[0] for row in await rows]

    hidden, left = asyncio.run(run())
    assert hidden is None and left == ["resp_2"]


def test_delete_removes_only_the_keys_own_response(store):
    async def run():
        await store.save("key-a", BODY, TURN)
        return (await store.delete("key-b", "resp_1"), await store.delete("key-a", "resp_1"),
                await store.get("key-a", "resp_1"))

    assert asyncio.run(run()) == (False, True, None)


def test_a_store_that_cannot_be_opened_raises_store_unavailable(tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = ResponseStore(SqliteStore(blocker / "data" / "ledger.sqlite3"), retention_days=30)
    with pytest.raises(StoreUnavailable, match="the response store at .* failed"):
        asyncio.run(store.get("key-a", "resp_1"))


def test_responses_input_is_measured_with_instructions_items_tools_and_schema():
    body = {"model": "auto", "instructions": "Be brief.", "max_output_tokens": 300,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "x" * 400},
                                                  {"type": "input_image", "image_url": "data:image/png;base64,AA"}]},
                      {"type": "function_call", "name": "f", "arguments": '{"a": 1}', "call_id": "c1"},
                      {"type": "function_call_output", "call_id": "c1", "output": "y" * 100}],
            "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
            "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}}}
    facts = request_facts(body)
    assert facts.chars == len("Be brief.") + 400 + len('f {"a": 1}') + 100
    assert facts.messages == 4 and facts.max_tokens == 300
    assert facts.kinds == frozenset({"vision", "tools", "json_schema"})
    assert facts.prompt_bytes > facts.chars  # the tool and response schemas count too


def test_a_string_input_and_a_completions_prompt_measure_like_one_user_message():
    assert request_facts({"model": "auto", "input": "a" * 600}).chars == 600
    assert conversation({"prompt": ["ab", "cd", [1, 2]]}) == [{"role": "user", "content": "ab"},
                                                              {"role": "user", "content": "cd"}]
    facts = request_facts({"model": "auto", "prompt": "é" * 10, "max_tokens": 5})
    assert (facts.chars, facts.prompt_bytes, facts.max_tokens, facts.messages) == (10, 20, 5, 1)
    assert request_facts({"model": "auto", "prompt": [1, 2, 3]}).chars == 0  # token ids: measured as empty


def test_the_field_that_set_the_output_limit_is_named():
    assert request_facts({"input": "a", "max_output_tokens": 9}).max_tokens_param == "max_output_tokens"
    assert request_facts({"messages": [], "max_completion_tokens": 9, "max_tokens": 3}).max_tokens_param == \
        "max_completion_tokens"
    assert request_facts({"prompt": "a"}).max_tokens_param == "max_tokens"
