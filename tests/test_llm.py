"""LLM backends against a real chat-completions server on 127.0.0.1, failures included."""

from __future__ import annotations

import pytest

from _chat_server import ChatServer
from sftselect.engine.cache import ScoreCache
from sftselect.errors import OptionError
from sftselect.models.llm import LLMError, OpenAIChatBackend, TransformersChatBackend


def _echo(messages: list[dict]) -> str:
    return "reply to: " + messages[-1]["content"]


def _backend(server: ChatServer, tmp_path, **options) -> OpenAIChatBackend:
    settings = {"max_retries": 5, "backoff_seconds": 0.01, "max_backoff_seconds": 0.05, "timeout": 5.0}
    settings.update(options)
    return OpenAIChatBackend("test-model", base_url=server.base_url, cache=ScoreCache(tmp_path / "llm.sqlite"), **settings)


def _ask(*texts: str) -> list[list[dict]]:
    return [[{"role": "user", "content": text}] for text in texts]


@pytest.fixture(scope="module")
def tiny_chat_model(tiny_llama_dir):
    return TransformersChatBackend(tiny_llama_dir, device="cpu", cache=None)


def test_replies_come_back_in_request_order_from_a_server_backed_by_a_local_model(tmp_path, tiny_chat_model):
    def generate(messages: list[dict]) -> str:
        return tiny_chat_model.chat([messages], max_tokens=6)[0].text

    questions = _ask("What is tea?", "Name a river.", "Why is the sky blue?")
    with ChatServer(generate) as server:
        replies = _backend(server, tmp_path, max_concurrency=3).chat(questions, max_tokens=6)
    expected = [tiny_chat_model.chat([question], max_tokens=6)[0].text for question in questions]
    assert [reply.text for reply in replies] == expected
    assert all(reply.error is None for reply in replies)


def test_rate_limits_server_errors_and_unreadable_replies_are_retried_until_an_answer(tmp_path):
    with ChatServer(_echo, failures=["429", "500", "garbage", "empty"]) as server:
        replies = _backend(server, tmp_path, max_concurrency=1).chat(_ask("hello"))
    assert replies[0].text == "reply to: hello"
    assert len(server.requests) == 5


def test_a_reply_slower_than_the_timeout_is_retried(tmp_path):
    with ChatServer(_echo, failures=["timeout"], slow_seconds=1.5) as server:
        replies = _backend(server, tmp_path, timeout=0.5).chat(_ask("hello"))
    assert replies[0].text == "reply to: hello"
    assert len(server.requests) == 2


def test_a_request_failing_every_retry_is_missing_with_its_reason_and_not_cached(tmp_path):
    with ChatServer(_echo, failures=["500", "500", "500"]) as server:
        backend = _backend(server, tmp_path, max_retries=2)
        failed = backend.chat(_ask("hello"))
        assert failed[0].text is None
        assert "3 attempts" in failed[0].error and "500" in failed[0].error
        retried = backend.chat(_ask("hello"))
    assert retried[0].text == "reply to: hello" and not retried[0].cached
    assert len(server.requests) == 4


def test_an_interrupted_run_resumes_without_sending_any_request_twice(tmp_path, monkeypatch):
    questions = _ask(*(f"question {number}" for number in range(6)))
    with ChatServer(_echo) as server:
        interrupted = _backend(server, tmp_path, max_concurrency=1)
        original = OpenAIChatBackend._request
        calls = {"count": 0}

        def dies_on_the_fourth(self, *args, **kwargs):
            calls["count"] += 1
            if calls["count"] == 4:
                raise KeyboardInterrupt
            return original(self, *args, **kwargs)

        monkeypatch.setattr(OpenAIChatBackend, "_request", dies_on_the_fourth)
        with pytest.raises(KeyboardInterrupt):
            interrupted.chat(questions)
        sent_before_interruption = len(server.requests)
        monkeypatch.setattr(OpenAIChatBackend, "_request", original)
        replies = _backend(server, tmp_path, max_concurrency=2).chat(questions)
    assert [reply.text for reply in replies] == [f"reply to: question {number}" for number in range(6)]
    sent = [messages[-1]["content"] for messages in server.requests]
    assert sorted(sent) == sorted(f"question {number}" for number in range(6))
    assert sent_before_interruption >= 3
    assert sum(reply.cached for reply in replies) == sent_before_interruption


def test_a_refused_key_stops_the_run_with_a_clear_error(tmp_path):
    with ChatServer(_echo, failures=["401"]) as server:
        with pytest.raises(LLMError, match="refused"):
            _backend(server, tmp_path).chat(_ask("hello"))


def test_no_key_and_no_local_server_is_an_option_error(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("SFTSELECT_API_KEY", raising=False)
    with pytest.raises(OptionError, match="OPENAI_API_KEY"):
        OpenAIChatBackend("gpt-4o-mini")


def test_the_local_backend_is_greedy_at_temperature_zero_and_caches_replies(tmp_path, tiny_llama_dir):
    backend = TransformersChatBackend(tiny_llama_dir, device="cpu", cache=ScoreCache(tmp_path / "llm.sqlite"))
    first = backend.chat(_ask("Say hi.", "Count to three."), max_tokens=5)
    again = backend.chat(_ask("Say hi.", "Count to three."), max_tokens=5)
    assert [reply.text for reply in again] == [reply.text for reply in first]
    assert all(reply.cached for reply in again) and not any(reply.cached for reply in first)


def test_the_local_backend_batches_prompts_of_similar_length_and_answers_each_in_its_place(tiny_llama_dir):
    import torch

    backend = TransformersChatBackend(tiny_llama_dir, device="cpu", cache=None)
    backend.batch_size = 2
    widths = []

    def generate(input_ids, attention_mask, **options):
        # The "reply" is the row's own prompt length as one token id, so each reply names its prompt.
        widths.append(input_ids.shape[1])
        return torch.cat([input_ids, attention_mask.sum(dim=1, keepdim=True)], dim=1)

    backend.model.generate = generate
    questions = _ask("Why is the sky blue at noon?", "Hi.", "Explain in detail, step by step, how a bill becomes a law.", "Yo.")
    prompts = [backend.tokenizer.apply_chat_template(question, tokenize=False, add_generation_prompt=True) for question in questions]
    lengths = [len(ids) for ids in backend.tokenizer(prompts, add_special_tokens=False)["input_ids"]]

    replies = backend.chat(questions, max_tokens=1)

    assert [reply.text for reply in replies] == [backend.tokenizer.decode([length]).strip() for length in lengths]
    # The long prompt pads only its own batch: the other batch is as wide as its longest prompt.
    assert sorted(widths) == sorted([max(lengths), sorted(lengths)[1]])
