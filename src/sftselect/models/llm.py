"""Chat LLM backends: any OpenAI-compatible endpoint, or a local `transformers` causal LM.

Both take a list of conversations and return one `LLMReply` per conversation, in order.
Replies are kept in a cache (SQLite) as soon as each arrives, so an interrupted run picks up
where it stopped and never sends the same request twice. A request that still fails after
its retries comes back with `text=None` and the reason in `error`; callers count it as missing.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from sftselect.batching import longest_first
from sftselect.devices import pick_device
from sftselect.errors import ModelLoadError, OptionError, SftselectError
from sftselect.fingerprints import canonical_json, identity_namespace
from sftselect.progress import progress
from sftselect.store import ScoreCache

Message = dict[str, str]
Conversation = list[Message]
API_KEY_VARIABLES = ("SFTSELECT_API_KEY", "OPENAI_API_KEY")


class LLMError(SftselectError):
    """An LLM endpoint refused every request (bad key, unknown model, unreachable server)."""


@dataclass(frozen=True)
class LLMReply:
    """One reply: its text, or None with the reason it is missing."""

    text: str | None
    error: str | None = None
    cached: bool = False


def default_llm_cache() -> ScoreCache:
    """The LLM reply cache in the user's cache folder (`llm.sqlite`)."""
    from sftselect.paths import cache_dir

    return ScoreCache(cache_dir() / "llm.sqlite")


def request_key(conversation: Conversation, temperature: float, max_tokens: int) -> str:
    """Cache key of one request: everything that determines the reply besides the model."""
    content = canonical_json({"messages": conversation, "temperature": temperature, "max_tokens": max_tokens})
    return hashlib.sha256(content.encode("utf-8")).hexdigest()


class ChatBackend:
    """Shared behaviour of the backends: the cache, the progress bar, the reply order."""

    identity: dict[str, Any]

    def __init__(self, cache: ScoreCache | None):
        self.cache = cache

    def chat(
        self,
        conversations: Sequence[Conversation],
        temperature: float = 0.0,
        max_tokens: int = 1024,
        description: str = "LLM requests",
    ) -> list[LLMReply]:
        """One reply per conversation, from the cache where it holds one, else from the model."""
        if temperature < 0:
            raise OptionError(f"temperature must be 0 or more, got {temperature}")
        keys = [request_key(list(conversation), temperature, max_tokens) for conversation in conversations]
        namespace = identity_namespace(self.identity, "chat")
        found = self.cache.get_many(namespace, keys) if self.cache is not None else {}
        replies: list[LLMReply | None] = [
            LLMReply(found[key], cached=True) if key in found else None for key in keys
        ]
        pending: dict[str, int] = {}
        for index, key in enumerate(keys):
            if replies[index] is None:
                pending.setdefault(key, index)
        answered: dict[str, LLMReply] = {}

        def keep(index: int, reply: LLMReply) -> None:
            answered[keys[index]] = reply
            if reply.text is not None and self.cache is not None:
                self.cache.put_many(namespace, {keys[index]: reply.text}, description=self.identity)
            bar.advance(1)

        with progress(description, total=len(pending), unit="requests") as bar:
            if pending:
                self._generate(
                    [(index, list(conversations[index])) for index in pending.values()], temperature, max_tokens, keep
                )
        return [reply if reply is not None else answered[key] for reply, key in zip(replies, keys)]

    def _generate(
        self,
        requests: list[tuple[int, Conversation]],
        temperature: float,
        max_tokens: int,
        keep: Callable[[int, LLMReply], None],
    ) -> None:
        raise NotImplementedError


class OpenAIChatBackend(ChatBackend):
    """An OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp server...).

    Requests run `max_concurrency` at a time; rate limits (429), server errors (5xx), timeouts
    and unreadable replies are retried up to `max_retries` times with exponential backoff and
    jitter (honouring Retry-After). Errors that retrying cannot fix (a bad key, an unknown
    model) stop the run at once.
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        max_concurrency: int = 8,
        max_retries: int = 5,
        timeout: float = 120.0,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 60.0,
        cache: ScoreCache | None = None,
    ):
        super().__init__(cache)
        if max_concurrency < 1:
            raise OptionError(f"concurrency must be at least 1, got {max_concurrency}")
        if max_retries < 0:
            raise OptionError(f"retries must be 0 or more, got {max_retries}")
        import openai

        key = api_key or next((os.environ[name] for name in API_KEY_VARIABLES if os.environ.get(name)), None)
        if key is None and base_url is None:
            raise OptionError(
                "no API key: set OPENAI_API_KEY (or SFTSELECT_API_KEY), or point --base-url at a local server"
            )
        # Local servers (vLLM, Ollama) accept any key; the client insists on one.
        self._client = openai.OpenAI(base_url=base_url, api_key=key or "not-needed", max_retries=0, timeout=timeout)
        self.model = model
        self.base_url = base_url or "https://api.openai.com/v1"
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.identity = {"backend": "openai", "model": model, "base_url": self.base_url}
        self.requests_sent = 0

    def _generate(self, requests, temperature, max_tokens, keep) -> None:
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            futures: dict[Future, int] = {
                pool.submit(self._request, conversation, temperature, max_tokens): index
                for index, conversation in requests
            }
            failure: BaseException | None = None
            try:
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in done:
                        index = futures.pop(future)
                        if future.cancelled():
                            continue
                        try:
                            reply = future.result()
                        except BaseException as error:
                            # Keep every reply that did arrive before stopping, so a rerun resumes after it.
                            if failure is None:
                                failure = error
                                for waiting in futures:
                                    waiting.cancel()
                            continue
                        keep(index, reply)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
            if failure is not None:
                raise failure

    def _request(self, conversation: Conversation, temperature: float, max_tokens: int) -> LLMReply:
        import openai

        retryable = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError)
        last_error, last_retry_after = "", None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self._backoff(attempt, last_retry_after))
                last_retry_after = None
            self.requests_sent += 1
            try:
                response = self._client.chat.completions.create(
                    model=self.model, messages=conversation, temperature=temperature, max_tokens=max_tokens
                )
            except retryable as error:
                last_error = _describe(error)
                last_retry_after = _retry_after(error)
                continue
            except openai.APIStatusError as error:
                if error.status_code in (401, 403, 404):
                    raise LLMError(f"{self.base_url} refused the request for model {self.model!r}: {_describe(error)}") from error
                if error.status_code >= 500 or error.status_code == 408:
                    last_error = _describe(error)
                    continue
                return LLMReply(None, error=_describe(error))
            except (openai.APIResponseValidationError, ValueError) as error:
                last_error = f"unreadable reply ({error})"
                continue
            text = _reply_text(response)
            if text is None:
                last_error = "the reply held no message text"
                continue
            return LLMReply(text)
        return LLMReply(None, error=f"gave up after {self.max_retries + 1} attempts: {last_error}")

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_backoff_seconds)
        delay = self.backoff_seconds * 2 ** (attempt - 1)
        return min(delay, self.max_backoff_seconds) * random.uniform(0.5, 1.0)


def _reply_text(response: Any) -> str | None:
    choices = getattr(response, "choices", None)
    if not choices:
        return None
    message = getattr(choices[0], "message", None)
    content = getattr(message, "content", None)
    return content if isinstance(content, str) else None


def _retry_after(error: Exception) -> float | None:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _describe(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    name = type(error).__name__
    return f"{name} (HTTP {status})" if status else name


class TransformersChatBackend(ChatBackend):
    """A local causal LM (a folder or hub id), prompted through its chat template."""

    def __init__(
        self,
        model_path: str | os.PathLike,
        device: str | None = None,
        batch_size: int = 8,
        cache: ScoreCache | None = None,
    ):
        super().__init__(cache)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        location = str(model_path)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(location)
            self.model = AutoModelForCausalLM.from_pretrained(location)
        except (OSError, ValueError) as error:
            raise ModelLoadError(f"could not load the local LLM {location!r}: {error}") from error
        if self.tokenizer.chat_template is None:
            raise ModelLoadError(f"{location} has no chat template; pass an instruction-tuned (chat) model")
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = pick_device(device)
        self.model.to(self.device).eval()
        self.batch_size = batch_size
        from sftselect.fingerprints import folder_digest

        weights = folder_digest(location) if Path(location).is_dir() else location
        self.identity = {"backend": "transformers", "model": location, "weights": weights}

    def _generate(self, requests, temperature, max_tokens, keep) -> None:
        import torch

        prompts = [
            self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
            for _, conversation in requests
        ]
        encoded = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        # Prompts of similar length share a batch, so that a long one does not pad all the others.
        order = longest_first([len(ids) for ids in encoded])
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            chunk = [requests[row] for row in rows]
            batch = self.tokenizer.pad({"input_ids": [encoded[row] for row in rows]}, return_tensors="pt").to(self.device)
            sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
            with torch.inference_mode():
                output = self.model.generate(
                    **batch, max_new_tokens=max_tokens, pad_token_id=self.tokenizer.pad_token_id, **sampling
                )
            new_tokens = output[:, batch["input_ids"].shape[1] :]
            for (index, _), tokens in zip(chunk, new_tokens):
                keep(index, LLMReply(self.tokenizer.decode(tokens, skip_special_tokens=True).strip()))


def make_backend(
    model: str | None = None,
    base_url: str | None = None,
    local_model: str | None = None,
    max_concurrency: int = 8,
    max_retries: int = 5,
    timeout: float = 120.0,
    cache: ScoreCache | None = None,
    device: str | None = None,
) -> ChatBackend:
    """The backend a command's options describe: `--local-model PATH`, else `--model` at `--base-url`."""
    if local_model is not None:
        if model is not None or base_url is not None:
            raise OptionError("--local-model runs a model here: drop --model and --base-url, or drop --local-model")
        return TransformersChatBackend(local_model, device=device, cache=cache)
    if model is None:
        raise OptionError("name the LLM: --model NAME (with --base-url for a local server), or --local-model PATH")
    return OpenAIChatBackend(
        model, base_url=base_url, max_concurrency=max_concurrency, max_retries=max_retries, timeout=timeout, cache=cache
    )
