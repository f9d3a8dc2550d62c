"""OpenAIProvider end to end, against the loopback FakeOpenAI server."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from email.utils import formatdate
from pathlib import Path

import pytest

from fakeprovider.openai_server import (
    SUMMARY_PREFIX,
    Cut,
    FakeOpenAI,
    HttpError,
    Raw,
    Reply,
    Stall,
)
from server.providers.base import (
    ChatMessage,
    ChatRequest,
    ChatResult,
    ContextOverflow,
    ProviderCancelled,
    ProviderError,
    ProviderInfo,
    ProviderNotConfigured,
    RetryNotice,
    ToolCall,
    ToolSpec,
    Usage,
)
from server.providers.openai import OpenAIProvider, OpenAISettings

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-SECRET0123456789abcdef"
OVERFLOW_BODY = {
    "error": {
        "message": "This model's maximum context length is 8192 tokens. However, your messages "
        "resulted in 9000 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "code": "context_length_exceeded",
    }
}


class Sink:
    """Records what the provider streams; ``first_text`` is set by the first text delta."""

    def __init__(self, on_retry: Callable[[RetryNotice], None] | None = None) -> None:
        self.texts: list[str] = []
        self.reasonings: list[str] = []
        self.retries: list[RetryNotice] = []
        self.first_text = threading.Event()
        self._on_retry = on_retry

    def text(self, delta: str) -> None:
        self.texts.append(delta)
        self.first_text.set()

    def reasoning(self, delta: str) -> None:
        self.reasonings.append(delta)

    def retry(self, notice: RetryNotice) -> None:
        self.retries.append(notice)
        if self._on_retry is not None:
            self._on_retry(notice)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(chunk_chars=4) as server:
        yield server


def settings_for(base_url: str, **overrides: object) -> OpenAISettings:
    settings = OpenAISettings(
        base_url=base_url,
        api_key=None,
        model="test-model",
        context_limit=8192,
        output_limit=1024,
        request_timeout_s=5.0,
        max_retries=2,
        backoff_base_s=0.001,
        backoff_max_s=0.01,
    )
    return replace(settings, **overrides)  # type: ignore[arg-type]


def provider_for(fake: FakeOpenAI, **overrides: object) -> OpenAIProvider:
    return OpenAIProvider(settings_for(fake.base_url, **overrides))


def ask(text: str = "Hello there") -> ChatRequest:
    return ChatRequest(
        messages=(
            ChatMessage("system", "You are a helpful assistant."),
            ChatMessage("user", text),
        )
    )


def chat(provider: OpenAIProvider, request: ChatRequest | None = None) -> tuple[ChatResult, Sink]:
    sink = Sink()
    result = provider.chat(request or ask(), sink, threading.Event())
    return result, sink


# -- streaming ---------------------------------------------------------------------------------


def test_streamed_text_arrives_in_order_and_matches_the_result(fake: FakeOpenAI) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    fake.push(Reply(text, chunk_chars=5))

    result, sink = chat(provider_for(fake))

    assert sink.texts == [text[i : i + 5] for i in range(0, len(text), 5)]
    assert "".join(sink.texts) == result.text == text
    assert result.finish == "stop"
    assert result.tool_calls == ()
    assert result.model == "test-model"
    body = fake.last_request.body
    assert body["stream"] is True
    assert body["model"] == "test-model"
    assert fake.last_request.path == "/v1/chat/completions"


def test_default_reply_echoes_the_last_user_message(fake: FakeOpenAI) -> None:
    result, _ = chat(provider_for(fake), ask("What is in main.py?"))

    assert result.text == "Echo: What is in main.py?"
    assert fake.requests[0].step == "default"


def test_usage_is_reported_from_the_final_chunk(fake: FakeOpenAI) -> None:
    fake.push(
        Reply("ok", prompt_tokens=120, completion_tokens=7, cached_tokens=20, reasoning_tokens=3)
    )

    result, _ = chat(provider_for(fake))

    assert result.usage == Usage(input=100, output=7, reasoning=3, cache_read=20, total=127)
    assert fake.last_request.body["stream_options"] == {"include_usage": True}


def test_reasoning_is_streamed_apart_from_the_text(fake: FakeOpenAI) -> None:
    fake.push(Reply("Answer.", reasoning="Let me think first.", chunk_chars=6))

    result, sink = chat(provider_for(fake))

    assert "".join(sink.reasonings) == result.reasoning == "Let me think first."
    assert "".join(sink.texts) == result.text == "Answer."


def test_tool_call_arguments_are_assembled_from_fragments(fake: FakeOpenAI) -> None:
    read_args = json.dumps({"path": "src/main.py", "start_line": 10, "end_line": 42})
    grep_args = json.dumps({"pattern": "def main", "glob": "**/*.py"})
    fake.push(
        Reply(
            "Let me look.",
            tool_calls=[("call_a", "read_file", read_args), ("call_b", "grep", grep_args)],
            chunk_chars=7,
        )
    )
    tool = ToolSpec("read_file", "Read a file", {"type": "object", "properties": {}})
    request = replace(ask(), tools=(tool,))

    result, _ = chat(provider_for(fake), request)

    assert result.finish == "tool_calls"
    assert result.text == "Let me look."
    assert result.tool_calls == (
        ToolCall("call_a", "read_file", read_args),
        ToolCall("call_b", "grep", grep_args),
    )
    assert fake.last_request.body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "read_file",
                "description": "Read a file",
                "parameters": {"type": "object", "properties": {}},
            },
        }
    ]


def test_tool_calls_ending_with_stop_are_reported_as_tool_calls(fake: FakeOpenAI) -> None:
    fake.push(Reply(tool_calls=[("c1", "ls", '{"path": "."}')], finish="stop"))

    result, _ = chat(provider_for(fake))

    assert result.finish == "tool_calls"
    assert result.tool_calls == (ToolCall("c1", "ls", '{"path": "."}'),)


def test_length_finish_is_reported(fake: FakeOpenAI) -> None:
    fake.push(Reply("cut short", finish="length"))

    result, _ = chat(provider_for(fake))

    assert result.finish == "length"


def test_request_body_maps_every_kind_of_message(fake: FakeOpenAI) -> None:
    call = ToolCall("call_1", "read_file", '{"path": "a.py"}')
    request = ChatRequest(
        messages=(
            ChatMessage("system", "Be brief."),
            ChatMessage("user", "Open a.py"),
            ChatMessage("assistant", "", tool_calls=(call,)),
            ChatMessage("tool", "print('hi')", tool_call_id="call_1"),
            ChatMessage("assistant", "It prints hi."),
            ChatMessage("user", "Thanks"),
        ),
        max_tokens=256,
        model="other-model",
    )

    chat(provider_for(fake), request)

    body = fake.last_request.body
    assert body["model"] == "other-model"
    assert body["max_tokens"] == 256
    assert "tools" not in body
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Open a.py"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "read_file", "arguments": '{"path": "a.py"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "print('hi')"},
        {"role": "assistant", "content": "It prints hi."},
        {"role": "user", "content": "Thanks"},
    ]


def test_sse_comments_event_lines_and_multiline_data_are_understood(fake: FakeOpenAI) -> None:
    first = json.dumps({"choices": [{"index": 0, "delta": {"content": "Hi"}}]})
    second = json.dumps({"choices": [{"index": 0, "delta": {"content": " there"}}]})
    done = json.dumps({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    split_at = first.index('"delta"')
    fake.push(
        Raw(
            [
                ": keep-alive\r\n\r\n",
                "event: message\r\nid: 1\r\n",
                f"data: {first[:split_at]}\r\ndata: {first[split_at:]}\r",
                "\n\r\n",
                f"data: {second}\n\n\n",
                f"data: {done}\n\ndata: [DONE]\n\n",
            ]
        )
    )

    result, sink = chat(provider_for(fake))

    assert sink.texts == ["Hi", " there"]
    assert result.text == "Hi there"
    assert result.finish == "stop"


def test_events_without_blank_lines_and_the_reasoning_field_are_understood(
    fake: FakeOpenAI,
) -> None:
    chunks = [
        {"choices": [{"index": 0, "delta": {"reasoning": "Hmm."}}]},
        {"choices": [{"index": 0, "delta": {"content": "Yes"}}]},
        {
            "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 2, "total_tokens": 11},
        },
    ]
    fake.push(Raw("".join(f"data: {json.dumps(c)}\n" for c in chunks) + "data: [DONE]\n"))

    result, sink = chat(provider_for(fake))

    assert sink.reasonings == ["Hmm."]
    assert sink.texts == ["Yes"]
    assert result.usage == Usage(input=9, output=2, total=11)


def test_an_answer_that_is_not_an_event_stream_is_reported(fake: FakeOpenAI) -> None:
    fake.push(Raw("<html>Please log in</html>", content_type="text/html"))

    with pytest.raises(ProviderError) as caught:
        chat(provider_for(fake))

    assert "not an event stream" in caught.value.message
    assert "text/html" in caught.value.message


def test_a_stream_that_ends_without_a_finish_is_an_error(fake: FakeOpenAI) -> None:
    partial = json.dumps({"choices": [{"index": 0, "delta": {"content": "Half an ans"}}]})
    fake.push(Raw(f"data: {partial}\n\n"))

    with pytest.raises(ProviderError) as caught:
        chat(provider_for(fake))

    assert "ended before the answer was complete" in caught.value.message
    assert caught.value.retryable is False
    assert len(fake.requests) == 1


def test_a_json_answer_to_a_streamed_request_is_accepted(fake: FakeOpenAI) -> None:
    answer = {
        "model": "test-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Whole"},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 5, "completion_tokens": 1, "total_tokens": 6},
    }
    fake.push(Raw(json.dumps(answer), content_type="application/json"))

    result, sink = chat(provider_for(fake))

    assert sink.texts == ["Whole"]
    assert result.text == "Whole"
    assert result.usage == Usage(input=5, output=1, total=6)


def sse(*deltas: dict[str, object], finish: str = "stop") -> list[str]:
    """One SSE event per delta, each its own HTTP chunk, then the finish and ``[DONE]``. The
    JSON is ASCII-escaped, so a lone surrogate travels as ``\\udXXX`` as some servers send it."""
    events = [f"data: {json.dumps({'choices': [{'index': 0, 'delta': d}]})}\n\n" for d in deltas]
    end = {"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    return [*events, f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n"]


def test_an_emoji_split_into_surrogate_halves_across_chunks_streams_as_the_emoji(
    fake: FakeOpenAI,
) -> None:
    fake.push(Raw(sse({"content": "\ud83d"}, {"content": "\ude00 done"})))

    result, sink = chat(provider_for(fake))

    assert result.text == "\U0001f600 done"
    assert "".join(sink.texts) == result.text
    assert all(text for text in sink.texts)  # nothing empty, no half of a character
    assert result.finish == "stop"


def test_surrogate_halves_across_chunks_of_reasoning_and_tool_arguments_are_joined(
    fake: FakeOpenAI,
) -> None:
    call = {"index": 0, "id": "c1", "function": {"name": "grep", "arguments": '{"pattern": "'}}
    more = [{"index": 0, "function": {"arguments": "\ud83d"}}]
    rest = [{"index": 0, "function": {"arguments": '\ude00"}'}}]
    fake.push(
        Raw(
            sse(
                {"reasoning_content": "I see \ud83d"},
                {"reasoning_content": "\ude00."},
                {"tool_calls": [call]},
                {"tool_calls": more},
                {"tool_calls": rest},
                finish="tool_calls",
            )
        )
    )

    result, sink = chat(provider_for(fake))

    assert result.reasoning == "".join(sink.reasonings) == "I see \U0001f600."
    assert result.tool_calls == (ToolCall("c1", "grep", '{"pattern": "\U0001f600"}'),)


def test_a_surrogate_half_that_never_gets_its_pair_becomes_a_replacement_character(
    fake: FakeOpenAI,
) -> None:
    fake.push(Raw(sse({"content": "odd \ude00 one"}, {"content": "then \ud83d"})))

    result, sink = chat(provider_for(fake))

    assert result.text == "odd \ufffd onethen \ufffd"
    assert "".join(sink.texts) == result.text
    assert result.finish == "stop"


def test_a_json_answer_holding_a_lone_surrogate_gets_a_replacement_character(
    fake: FakeOpenAI,
) -> None:
    answer = {
        "choices": [{"index": 0, "message": {"content": "smile \ud83d"}, "finish_reason": "stop"}],
    }
    fake.push(Raw(json.dumps(answer), content_type="application/json"))

    result, sink = chat(provider_for(fake))

    assert result.text == "".join(sink.texts) == "smile \ufffd"


def test_an_error_message_holding_a_lone_surrogate_is_reported_with_a_replacement_character(
    fake: FakeOpenAI,
) -> None:
    error = {"error": {"message": "model \ud83d broke"}}
    fake.push(Raw(f"data: {json.dumps(error)}\n\n"))

    with pytest.raises(ProviderError) as caught:
        chat(provider_for(fake))

    assert "model \ufffd broke" in caught.value.message


# -- errors and retries ------------------------------------------------------------------------


def test_context_length_error_raises_context_overflow(fake: FakeOpenAI) -> None:
    fake.push(HttpError(400, OVERFLOW_BODY))

    with pytest.raises(ContextOverflow) as caught:
        chat(provider_for(fake))

    assert caught.value.status == 400
    assert caught.value.retryable is False
    assert "maximum context length" in caught.value.message
    assert len(fake.requests) == 1


def test_an_overflow_error_inside_the_stream_raises_context_overflow(fake: FakeOpenAI) -> None:
    fake.push(Raw(f"data: {json.dumps(OVERFLOW_BODY)}\n\n"))

    with pytest.raises(ContextOverflow):
        chat(provider_for(fake))


def test_429_is_retried_after_retry_after_and_then_succeeds(fake: FakeOpenAI) -> None:
    fake.push(HttpError(429, {"error": {"message": "Rate limit reached"}}, {"Retry-After": "0"}))
    fake.push(Reply("finally"))

    result, sink = chat(provider_for(fake))

    assert result.text == "finally"
    assert len(fake.requests) == 2
    assert sink.retries == [RetryNotice(1, 0.0, "HTTP 429 Too Many Requests")]


def test_retry_after_ms_and_http_dates_are_honoured(fake: FakeOpenAI) -> None:
    past = formatdate(0, usegmt=True)
    fake.push(HttpError(503, headers={"retry-after-ms": "5"}))
    fake.push(HttpError(502, headers={"Retry-After": past}))
    fake.push(Reply("ok"))

    result, sink = chat(provider_for(fake))

    assert result.text == "ok"
    assert [(n.attempt, n.delay_s) for n in sink.retries] == [(1, 0.005), (2, 0.0)]


def test_server_errors_exhaust_retries_with_a_retryable_error(fake: FakeOpenAI) -> None:
    for _ in range(3):
        fake.push(HttpError(500, {"error": {"message": "The server had an error"}}))
    fake.push(Reply("never reached"))

    with pytest.raises(ProviderError) as caught:
        chat(provider_for(fake, max_retries=2, backoff_base_s=0.001, backoff_max_s=0.0015))

    error = caught.value
    assert error.status == 500
    assert error.retryable is True
    assert "500" in error.message and "The server had an error" in error.message
    assert len(fake.requests) == 3
    assert fake.pending_steps == 1


def test_backoff_doubles_and_is_capped(fake: FakeOpenAI) -> None:
    for _ in range(3):
        fake.push(HttpError(503))
    sink = Sink()
    provider = provider_for(fake, max_retries=3, backoff_base_s=0.001, backoff_max_s=0.003)

    provider.chat(ask(), sink, threading.Event())

    assert [n.delay_s for n in sink.retries] == [0.001, 0.002, 0.003]


def test_401_is_not_retried(fake: FakeOpenAI) -> None:
    fake.push(HttpError(401, {"error": {"message": "Incorrect API key provided"}}))
    fake.push(Reply("never reached"))

    with pytest.raises(ProviderError) as caught:
        chat(provider_for(fake))

    assert caught.value.status == 401
    assert caught.value.retryable is False
    assert "Incorrect API key provided" in caught.value.message
    assert not isinstance(caught.value, ContextOverflow)
    assert len(fake.requests) == 1


def test_connection_refused_is_retried_then_reported() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sink = Sink()
    provider = OpenAIProvider(settings_for(f"http://127.0.0.1:{port}/v1", max_retries=1))

    with pytest.raises(ProviderError) as caught:
        provider.chat(ask(), sink, threading.Event())

    assert caught.value.retryable is True
    assert "refused" in caught.value.message
    assert [n.attempt for n in sink.retries] == [1]


def test_stall_timeout_is_reported_as_a_retryable_error(fake: FakeOpenAI) -> None:
    fake.push(Stall(after_chunks=1, text="Thinking hard"))
    fake.push(Reply("never reached"))

    # The timeout must outlast the first chunk's arrival on a loaded machine: a timeout before
    # any text is retried (and the second step would answer), which is not what this pins.
    with pytest.raises(ProviderError) as caught:
        chat(provider_for(fake, request_timeout_s=1.5))

    assert caught.value.retryable is True
    assert "stalled" in caught.value.message
    assert len(fake.requests) == 1  # text was streamed: a retry would repeat it


def test_a_stall_before_any_text_is_retried(fake: FakeOpenAI) -> None:
    fake.push(Stall(after_chunks=0))
    fake.push(Reply("second time lucky"))

    result, sink = chat(provider_for(fake, request_timeout_s=0.3))

    assert result.text == "second time lucky"
    assert len(sink.retries) == 1
    assert len(fake.requests) == 2


def test_cut_stream_after_text_is_not_retried(fake: FakeOpenAI) -> None:
    fake.push(Cut(after_chunks=2, text="abcdefghijkl"))
    fake.push(Reply("never reached"))

    sink = Sink()

    with pytest.raises(ProviderError) as caught:
        provider_for(fake).chat(ask(), sink, threading.Event())

    assert sink.texts == ["abcd", "efgh"]
    assert "cut" in caught.value.message
    assert caught.value.retryable is True
    assert len(fake.requests) == 1
    assert fake.pending_steps == 1


def test_a_reset_before_any_text_is_retried(fake: FakeOpenAI) -> None:
    fake.push(Cut(after_chunks=0, reset=True))
    fake.push(Reply("recovered"))

    result, sink = chat(provider_for(fake))

    assert result.text == "recovered"
    assert len(sink.retries) == 1
    assert len(fake.requests) == 2


# -- cancellation ------------------------------------------------------------------------------


def test_cancel_during_a_stalled_stream_closes_the_connection(fake: FakeOpenAI) -> None:
    fake.push(Stall(after_chunks=1, text="Thinking"))
    provider = provider_for(fake, request_timeout_s=30.0)
    sink = Sink()
    cancel = threading.Event()
    outcome: list[BaseException | ChatResult] = []

    def run() -> None:
        try:
            outcome.append(provider.chat(ask(), sink, cancel))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    assert sink.first_text.wait(5)
    cancel.set()
    worker.join(5)

    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], ProviderCancelled)
    assert sink.texts == ["Thin"]
    assert fake.wait_for_disconnects(1, timeout=5)


def test_cancel_before_the_request_sends_nothing(fake: FakeOpenAI) -> None:
    cancel = threading.Event()
    cancel.set()

    with pytest.raises(ProviderCancelled):
        provider_for(fake).chat(ask(), Sink(), cancel)

    assert fake.requests == []


def test_cancel_while_waiting_to_retry_stops_the_wait(fake: FakeOpenAI) -> None:
    cancel = threading.Event()
    fake.push(HttpError(429, headers={"Retry-After": "30"}))
    sink = Sink(on_retry=lambda notice: cancel.set())

    with pytest.raises(ProviderCancelled):
        provider_for(fake).chat(ask(), sink, cancel)

    assert [n.delay_s for n in sink.retries] == [30.0]
    assert len(fake.requests) == 1


# -- secrets and configuration -----------------------------------------------------------------


def test_api_key_never_appears_in_errors(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = provider_for(fake, api_key=KEY, max_retries=1)
    fake.push(HttpError(401, {"error": {"message": "Bad key"}}, echo_auth=True))
    fake.push(HttpError(500, {"error": {"message": "Boom"}}, echo_auth=True))
    fake.push(HttpError(500, {"error": {"message": f"Boom {KEY}"}}, echo_auth=True))

    errors: list[ProviderError] = []
    sink = Sink()
    for _ in range(2):
        with pytest.raises(ProviderError) as caught:
            provider.chat(ask(), sink, threading.Event())
        errors.append(caught.value)

    assert len(fake.requests) == 3
    assert fake.requests[0].headers["authorization"] == f"Bearer {KEY}"  # it was echoed
    assert "Bad key" in errors[0].message and "***" in errors[0].message
    for error in errors:
        assert KEY not in str(error)
        assert KEY not in repr(error.args)
        assert KEY not in error.message
    assert sink.retries
    assert all(KEY not in notice.reason for notice in sink.retries)
    assert caplog.records
    assert KEY not in caplog.text
    assert KEY not in repr(provider.settings)


@pytest.mark.parametrize(
    ("base_url", "model", "missing"),
    [("", "m", "baseUrl"), ("http://127.0.0.1:1/v1", "", "model"), ("  ", " ", "baseUrl")],
)
def test_missing_base_url_or_model_is_not_configured(
    base_url: str, model: str, missing: str
) -> None:
    with pytest.raises(ProviderNotConfigured) as caught:
        OpenAIProvider(settings_for(base_url, model=model))

    assert missing in caught.value.message


def test_a_base_url_that_is_not_http_is_not_configured() -> None:
    with pytest.raises(ProviderNotConfigured) as caught:
        OpenAIProvider(settings_for("ftp://example.com/v1"))

    assert "baseUrl" in caught.value.message


def test_info_reports_the_model_and_limits(fake: FakeOpenAI) -> None:
    assert provider_for(fake).info == ProviderInfo("openai", "test-model", 8192, 1024)


def test_authorization_header_sent_only_with_a_key(fake: FakeOpenAI) -> None:
    chat(provider_for(fake, api_key=None))
    chat(provider_for(fake, api_key=KEY))
    chat(OpenAIProvider(settings_for(fake.base_url + "/", api_key="")))

    first, second, third = fake.requests
    assert "authorization" not in first.headers
    assert second.headers["authorization"] == f"Bearer {KEY}"
    assert "authorization" not in third.headers
    assert third.path == "/v1/chat/completions"
    assert first.headers["accept"] == "text/event-stream"
    assert first.headers["content-type"] == "application/json"


# -- the fake itself ---------------------------------------------------------------------------


def test_fake_answers_summary_requests_with_a_summary_and_steps_can_wait_for_them(
    fake: FakeOpenAI,
) -> None:
    fake.push(Reply("a scripted summary"), when="summary")
    provider = provider_for(fake)
    summary_request = ChatRequest(
        messages=(
            ChatMessage("system", SUMMARY_PREFIX + " that is about to be shortened."),
            ChatMessage("user", "Summarize"),
        )
    )

    chat_result, _ = chat(provider, ask("hi"))
    first_summary, _ = chat(provider, summary_request)
    second_summary, _ = chat(provider, summary_request)

    assert chat_result.text == "Echo: hi"
    assert first_summary.text == "a scripted summary"
    assert second_summary.text.startswith("## Objective\n")
    assert fake.chat_requests == 1
    assert fake.summary_requests == 2
    assert fake.wait_for_requests(3, timeout=1)


def test_fake_runs_as_a_module_and_prints_its_base_url() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "fakeprovider.openai_server", "--port", "0", "--chunk-chars", "3"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            base_url = proc.stdout.readline().strip()
            assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
            result, sink = chat(OpenAIProvider(settings_for(base_url)), ask("ping"))
            assert result.text == "Echo: ping"
            assert sink.texts[0] == "Ech"
        finally:
            proc.terminate()
            proc.wait(timeout=5)
    assert proc.returncode == 0
