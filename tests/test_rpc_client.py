"""The JSON-RPC client, against the scripted fake sidecar (tests/procs/fake_sidecar.py)."""

from __future__ import annotations

import io
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from client.rpc_client import (
    FramingError,
    RpcClient,
    RpcClosed,
    RpcError,
    encode_frame,
    read_frame,
)

FAKE = str(Path(__file__).resolve().parent / "procs" / "fake_sidecar.py")


@pytest.fixture
def client() -> Iterator[RpcClient]:
    c = RpcClient.spawn([sys.executable, FAKE], stderr=subprocess.PIPE)
    yield c
    c.close()


def test_a_frame_counts_utf8_bytes_not_characters() -> None:
    frame = encode_frame({"text": "é✓🙂"})
    header, body = frame.split(b"\r\n\r\n", 1)
    assert header == b"Content-Length: %d" % len(body)
    assert len(body) > len('{"text":"é✓🙂"}')
    assert read_frame(io.BytesIO(frame + frame)) == body


def test_read_frame_tells_a_clean_end_from_a_broken_stream() -> None:
    assert read_frame(io.BytesIO(b"")) is None
    with pytest.raises(FramingError):
        read_frame(io.BytesIO(b"Content-Type: x\r\n\r\n{}"))
    with pytest.raises(FramingError):
        read_frame(io.BytesIO(b"Content-Length: 10\r\n\r\n{}"))


def test_multibyte_payloads_round_trip_through_a_real_process(client: RpcClient) -> None:
    payload = {"text": "héllo wörld — ✓ 日本語 🙂" * 50, "n": [1, 2.5, None, True]}
    assert client.request("test/echo", payload) == payload
    # the framing stayed in step: a second request works too
    assert client.request("test/echo", {"again": "ß"}) == {"again": "ß"}


def test_initialize_returns_the_result_and_sends_initialized(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    with RpcClient.spawn([sys.executable, FAKE, "--log", str(log)]) as c:
        result = c.initialize(init_options={"x": 1})
        assert result["capabilities"]["experimental"]["sessionlsp"]["protocolVersion"] == 1
        c.request("test/echo", {})  # the fake has read everything before this
    lines = log.read_text(encoding="utf-8").splitlines()
    assert '"initialize"' in lines[0] and '"initializationOptions": {"x": 1}' in lines[0]
    assert '"initialized"' in lines[1]
    assert c.returncode == 0


def test_notifications_reach_callbacks_in_order_before_the_response(client: RpcClient) -> None:
    seen: list[int] = []
    everything: list[str] = []
    client.on_notification("test/event", lambda method, params: seen.append(params["i"]))
    client.on_notification(None, lambda method, params: everything.append(method))
    client.request("test/notify", {"count": 50})
    assert seen == list(range(50))
    assert everything == ["test/event"] * 50


def test_a_failing_callback_does_not_stop_the_others(client: RpcClient) -> None:
    seen: list[int] = []

    def broken(method: str, params: Any) -> None:
        raise RuntimeError("callback bug")

    client.on_notification("test/event", broken)
    client.on_notification("test/event", lambda method, params: seen.append(params["i"]))
    client.request("test/notify", {"count": 3})
    assert seen == [0, 1, 2]


def test_unsubscribe_stops_delivery(client: RpcClient) -> None:
    seen: list[int] = []
    unsubscribe = client.on_notification("test/event", lambda m, p: seen.append(p["i"]))
    client.request("test/notify", {"count": 2})
    unsubscribe()
    client.request("test/notify", {"count": 2})
    assert seen == [0, 1]


def test_work_done_progress_create_from_the_server_is_answered_null(client: RpcClient) -> None:
    answer = client.request(
        "test/serverRequest",
        {"method": "window/workDoneProgress/create", "params": {"token": "t1"}},
    )
    assert answer == {"answer": {"result": None}}


def test_unknown_server_requests_get_method_not_found(client: RpcClient) -> None:
    answer = client.request("test/serverRequest", {"method": "x/unknown", "params": {}})
    assert answer["answer"]["error"]["code"] == -32601


def test_on_request_overrides_the_default_answers(client: RpcClient) -> None:
    def refuse(method: str, params: Any) -> Any:
        raise RpcError(-32800, "no progress here", {"token": params["token"]})

    client.on_request("window/workDoneProgress/create", refuse)
    client.on_request("x/custom", lambda method, params: {"got": params})
    refused = client.request(
        "test/serverRequest",
        {"method": "window/workDoneProgress/create", "params": {"token": "t2"}},
    )
    assert refused["answer"]["error"] == {
        "code": -32800,
        "message": "no progress here",
        "data": {"token": "t2"},
    }
    custom = client.request("test/serverRequest", {"method": "x/custom", "params": [1]})
    assert custom == {"answer": {"result": {"got": [1]}}}


def test_error_responses_raise_rpc_error_with_code_and_data(client: RpcClient) -> None:
    with pytest.raises(RpcError) as caught:
        client.request("test/error", {"code": -32001, "message": "unknown session", "data": [7]})
    assert caught.value.code == -32001
    assert caught.value.message == "unknown session"
    assert caught.value.data == [7]
    with pytest.raises(RpcError) as missing:
        client.request("no/such/method")
    assert missing.value.code == -32601


def test_the_process_dying_mid_request_raises_rpc_closed(client: RpcClient) -> None:
    other = client.request_async("test/hang")
    with pytest.raises(RpcClosed) as caught:
        client.request("test/exit", {"code": 3})
    assert caught.value.returncode == 3
    with pytest.raises(RpcClosed):
        other.result()
    assert client.closed
    with pytest.raises(RpcClosed):
        client.request("test/echo", {})
    assert client.returncode == 3


def test_a_request_times_out_and_the_client_stays_usable(client: RpcClient) -> None:
    with pytest.raises(TimeoutError):
        client.request("test/hang", timeout=0.05)
    assert client.request("test/echo", [1]) == [1]


def test_malformed_frames_from_the_client_do_not_break_the_connection(
    client: RpcClient,
) -> None:
    client.send_raw(b"Content-Length: 9\r\n\r\nnot json!")
    assert client.request("test/echo", {"ok": True}) == {"ok": True}


def test_requests_from_many_threads_each_get_their_own_answer(client: RpcClient) -> None:
    results: dict[int, Any] = {}

    def ask(i: int) -> None:
        results[i] = client.request("test/echo", {"i": i, "pad": "ü" * i})

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: {"i": i, "pad": "ü" * i} for i in range(20)}


def test_stderr_is_drained_into_a_tail(client: RpcClient) -> None:
    lines: list[str] = []
    client.on_stderr(lines.append)
    client.request("test/stderr", {"text": "warning: über"})
    client.close()
    assert client.stderr_tail() == ["warning: über"]
    assert lines == ["warning: über"]


def test_close_shuts_the_server_down_cleanly() -> None:
    c = RpcClient.spawn([sys.executable, FAKE])
    assert c.close() == 0
    assert c.closed
    assert c.close() == 0  # idempotent


def test_a_process_that_exits_at_once_fails_the_first_request() -> None:
    c = RpcClient.spawn(
        [sys.executable, FAKE, "--exit-on-start", "4", "--stderr-on-start", "no config"],
        stderr=subprocess.PIPE,
    )
    with pytest.raises(RpcClosed):
        c.initialize()
    assert c.wait(5) == 4
    assert c.stderr_tail() == ["no config"]
    c.close()


def test_a_handler_can_answer_later_while_notifications_keep_flowing(client: RpcClient) -> None:
    later: Future[Any] = Future()
    asked = threading.Event()
    seen: list[int] = []

    def ask(method: str, params: Any) -> Any:
        asked.set()
        return later

    client.on_request("x/ask", ask)
    client.on_notification("test/event", lambda method, params: seen.append(params["i"]))
    answer = client.request_async("test/serverRequest", {"method": "x/ask", "params": {}})
    assert asked.wait(5)
    client.request("test/notify", {"count": 2})  # the reader thread is not held by the handler
    assert seen == [0, 1]
    assert not answer.done()
    threading.Thread(target=later.set_result, args=({"picked": "once"},)).start()
    assert answer.result(5) == {"answer": {"result": {"picked": "once"}}}


def test_a_later_answer_can_be_an_error(client: RpcClient) -> None:
    refused: Future[Any] = Future()
    refused.set_exception(RpcError(-32800, "nobody here"))
    broken: Future[Any] = Future()
    broken.set_exception(RuntimeError("bug"))
    client.on_request("x/refused", lambda method, params: refused)
    client.on_request("x/broken", lambda method, params: broken)
    first = client.request("test/serverRequest", {"method": "x/refused", "params": {}})
    assert first["answer"]["error"] == {"code": -32800, "message": "nobody here"}
    second = client.request("test/serverRequest", {"method": "x/broken", "params": {}})
    assert second["answer"]["error"]["code"] == -32603
