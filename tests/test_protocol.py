"""docs/protocol.md §5 message object and §6 client frames, checked without a server."""

from __future__ import annotations

import json

import pytest

from quartchat.protocol import (
    ChatFrame,
    ErrorCode,
    FrameError,
    PingFrame,
    StoredMessage,
    UserRef,
    batch_frame,
    format_ts,
    history_frame,
    list_frame,
    parse_frame,
)


def test_message_object_shape_and_client_id_only_when_given() -> None:
    message = StoredMessage(42, "lobby", UserRef("u1", "alice"), "hello", 1_795_000_266_123, "c-17")
    assert json.loads(message.json) == {
        "id": 42,
        "type": "chat",
        "room": "lobby",
        "user": {"id": "u1", "name": "alice"},
        "data": "hello",
        "ts": format_ts(1_795_000_266_123),
        "client_id": "c-17",
    }
    plain = StoredMessage(43, "lobby", UserRef("u1", "alice"), "hi", 0)
    assert "client_id" not in json.loads(plain.json)


def test_ts_is_utc_iso_8601_with_milliseconds_and_z() -> None:
    assert format_ts(0) == "1970-01-01T00:00:00.000Z"
    assert format_ts(1_795_534_266_007) == "2026-11-24T15:31:06.007Z"


def test_batch_frame_holds_the_messages_in_order() -> None:
    frames = [json.dumps({"id": i}) for i in (1, 2, 3)]
    assert json.loads(batch_frame(frames)) == {"type": "batch", "messages": [{"id": 1}, {"id": 2}, {"id": 3}]}


def test_history_and_list_frames_hold_what_they_are_given() -> None:
    alice, bob = UserRef("u1", "alice"), UserRef("u2", "Bob")
    messages = [StoredMessage(i, "lobby", alice, f"m{i}", 1_795_000_266_123) for i in (1, 2)]
    assert json.loads(history_frame("lobby", messages, True, False)) == {
        "type": "history",
        "room": "lobby",
        "messages": [json.loads(m.json) for m in messages],
        "has_more": True,
        "reset": False,
        "last_read_id": 0,
    }
    assert json.loads(history_frame("lobby", [], False, True, last_read_id=7))["last_read_id"] == 7
    assert json.loads(list_frame("lobby", [alice, bob])) == {
        "type": "list",
        "room": "lobby",
        "data": [{"id": "u1", "name": "alice"}, {"id": "u2", "name": "Bob"}],
    }


def test_valid_frames() -> None:
    assert parse_frame('{"type": "ping"}', 10) == PingFrame()
    assert parse_frame('{"type": "chat", "data": "hi", "client_id": "c1"}', 10) == ChatFrame("hi", "c1")
    assert parse_frame('{"type": "chat", "data": "' + "é" * 10 + '"}', 10) == ChatFrame("é" * 10, None)


@pytest.mark.parametrize(
    "raw, code, echoed",
    [
        (b"{}", ErrorCode.BAD_REQUEST, None),
        ("nope", ErrorCode.BAD_REQUEST, None),
        ('"chat"', ErrorCode.BAD_REQUEST, None),
        ('{"type": "dance", "client_id": "c"}', ErrorCode.BAD_REQUEST, "c"),
        ('{"type": null, "data": "x"}', ErrorCode.BAD_REQUEST, None),
        ('{"type": "chat", "client_id": "c"}', ErrorCode.BAD_REQUEST, "c"),
        ('{"type": "chat", "data": ["x"]}', ErrorCode.BAD_REQUEST, None),
        ('{"type": "chat", "data": "x", "client_id": 7}', ErrorCode.BAD_REQUEST, None),
        ('{"type": "chat", "data": "x", "client_id": "' + "c" * 65 + '"}', ErrorCode.BAD_REQUEST, None),
        ('{"type": "chat", "data": "\\ud800"}', ErrorCode.BAD_REQUEST, None),
        ('{"type": "chat", "data": " \\t\\n", "client_id": "c"}', ErrorCode.EMPTY, "c"),
        ('{"type": "chat", "data": "' + "x" * 11 + '", "client_id": "c"}', ErrorCode.TOO_LONG, "c"),
    ],
)
def test_bad_frames_name_their_error(raw: str | bytes, code: ErrorCode, echoed: str | None) -> None:
    with pytest.raises(FrameError) as refused:
        parse_frame(raw, 10)
    assert refused.value.code == code and refused.value.client_id == echoed


@pytest.mark.parametrize(
    "text", ["\u200b", "\u3164", "\u2800", "\u115f\u1160", " \u200d\u200c ", "\ufeff", "\u2060\u180e", "\u3000\u00a0"]
)
def test_a_text_made_only_of_characters_that_show_nothing_is_empty(text: str) -> None:
    with pytest.raises(FrameError) as refused:
        parse_frame(json.dumps({"type": "chat", "data": text, "client_id": "c1"}), 4000)
    assert refused.value.code == ErrorCode.EMPTY and refused.value.client_id == "c1"


@pytest.mark.parametrize("text", ["\u200bx", "\u3164ㅎ", "👍\ufe0f", "\u2800⠁"])
def test_a_text_with_something_visible_is_kept_exactly(text: str) -> None:
    frame = parse_frame(json.dumps({"type": "chat", "data": text}), 4000)
    assert isinstance(frame, ChatFrame) and frame.text == text
