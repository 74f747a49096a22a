"""BIG messenger /websocket with the Python `websockets` client against a running roomcast.

Environment: ROOMCAST_URL (http://127.0.0.1:PORT, a server with 2 shards), ROOMCAST_BIN (the
binary: `token`, and a second server with a short silence timeout) and ROOMCAST_DATA_DIR (the
server's data directory, whose jwt_secret `token` uses).
"""

import asyncio
import json
import time
import uuid

import websockets

from roomcast_client import WS, private_server, rest, token


def unique(name):
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def connect(user, ws_url=WS, data_dir=None):
    return await websockets.connect(ws_url + "/websocket",
                                    additional_headers={"Authorization": "Bearer " + token(user, data_dir=data_dir)})


async def recv_json(ws, timeout=5):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def request(ws, rid, payload_type, payload):
    await ws.send(json.dumps({"type": "request", "timestamp": int(time.time() * 1000), "id": rid,
                              "payloadType": payload_type, "payload": payload}))
    while True:
        frame = await recv_json(ws)
        if frame.get("type") == "response" and frame.get("id") == rid:
            return frame
        if "error" in frame:
            return frame


async def ok(ws, rid, payload_type, payload):
    frame = await request(ws, rid, payload_type, payload)
    assert frame.get("type") == "response", frame
    assert isinstance(frame["timestamp"], int)
    return frame["payload"]


async def next_event(ws, event_type, timeout=5):
    while True:
        frame = await recv_json(ws, timeout)
        if frame.get("type") == "event" and frame.get("eventType") == event_type:
            assert frame["id"]
            return frame


async def auth_ping_and_errors():
    # 401 with BIG's body before any upgrade.
    try:
        await websockets.connect(WS + "/websocket", additional_headers={"Authorization": "Bearer nope"})
        raise AssertionError("upgraded with a bad token")
    except websockets.exceptions.InvalidStatus as e:
        assert e.response.status_code == 401
        body = json.loads(e.response.body)
        assert body["error"] == "Unauthorized" and body["status"] == 401 and body["timestamp"] > 0

    ws = await connect(unique("py-ping"))
    await ws.send("ping")
    assert await recv_json(ws) == {"event": "pong"}
    await ws.send("{oops, not json")
    err = await recv_json(ws)
    assert err["error"]["incomingMessage"] == "{oops, not json" and err["error"]["exception"]
    chats = await ok(ws, "r1", "chats", {})
    assert chats == []
    dup = await request(ws, "r1", "chats", {})
    assert dup == {"error": {"id": "r1", "type": "warning", "exception": "Duplicate request id"}}
    await ws.close()


async def dialog_and_cross_dialect():
    alice_id, bob_id, carol_id = unique("py-alice"), unique("py-bob"), unique("py-carol")
    alice = await connect(alice_id)
    bob = await connect(bob_id)
    # Answered through bob's user owner, which so knows bob is connected before the dialog exists.
    assert await ok(bob, "0", "chats", {}) == []

    sent = await ok(alice, "1", "new", {"chatId": bob_id, "message": "hello", "clientMessageId": "py-c1"})
    assert sent["messageId"] == 1 and sent["clientMessageId"] == "py-c1"
    # The new dialog's chat list comes first, then its first message.
    while True:
        first = await recv_json(bob)
        if first.get("eventType") in ("chats", "new"):
            break
    assert first["eventType"] == "chats", first
    assert first["payload"][0]["id"] == alice_id
    new = await next_event(bob, "new")
    assert new["payload"]["chatId"] == alice_id and new["payload"]["sender"] == alice_id
    assert new["payload"]["messageId"] == 1 and new["payload"]["message"] == "hello"
    await bob.send(json.dumps({"type": "ack", "id": new["id"]}))
    # The chat list counts it unread, with its text.
    item = (await ok(bob, "l1", "chats", {}))[0]
    assert item["missed"] == 1 and item["lastMessageText"] == "hello", item
    assert item["lastMessageStatus"] == "unread" and item["isMine"] is False, item
    assert (await ok(bob, "l2", "chat", {"chatId": alice_id}))["missed"] == 1

    reply = await ok(bob, "1", "new", {"chatId": alice_id, "message": "hi back"})
    assert reply["messageId"] == 2
    back = await next_event(alice, "new")
    assert back["payload"]["chatId"] == bob_id and back["payload"]["messageId"] == 2

    history = await ok(alice, "2", "messages", {"chatId": bob_id, "count": 10})
    assert [m["message"] for m in history] == ["hello", "hi back"]
    await ok(alice, "3", "delete", {"chatId": bob_id, "originalMessageId": 1})
    gone = await next_event(bob, "delete")
    assert gone["payload"] == {"chatId": alice_id, "messageId": 1, "originalMessageId": 1}

    # A group shared with a Virola client: both directions.
    service = token("backend", "service")
    status, body = rest("POST", "/api/v1/rooms", service, {"name": "py-big", "members": [alice_id, carol_id]})
    assert status == 201, body
    room = body["room"]["id"]
    carol = await websockets.connect(WS + "/api/v1/events",
                                     additional_headers={"Authorization": "Bearer " + token(carol_id)})
    await asyncio.sleep(0.2)
    await ok(alice, "4", "new", {"chatId": str(room), "message": "to virola"})
    while True:
        event = await recv_json(carol)
        if event.get("type") == "TextMessagesCreated":
            assert "to virola" in json.dumps(event)
            break
    status, _ = rest("POST", f"/api/v1/rooms/{room}/messages", token(carol_id), {"text": "to big"})
    assert status == 201
    new = await next_event(alice, "new")
    assert new["payload"]["chatId"] == str(room) and new["payload"]["sender"] == carol_id
    assert new["payload"]["message"] == "to big" and new["payload"]["messageId"] == 2
    for ws in (alice, bob, carol):
        await ws.close()


async def events_within(ws, seconds):
    events, deadline = [], time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return events
        try:
            frame = json.loads(await asyncio.wait_for(ws.recv(), left))
        except asyncio.TimeoutError:
            return events
        if frame.get("type") == "event":
            events.append(frame)


async def presence_typing_receipts():
    alice_id, bob_id = unique("py-alice"), unique("py-bob")
    alice = await connect(alice_id)
    await ok(alice, "1", "new", {"chatId": bob_id, "message": "first", "clientMessageId": "p1"})
    bob = await connect(bob_id)
    # Presence both ways; waiting messages are delivered on connect (alice gets dlvrd).
    assert (await next_event(alice, "online"))["payload"] == {"userId": bob_id}
    assert (await next_event(bob, "online"))["payload"] == {"userId": alice_id}
    dlvrd = await next_event(alice, "dlvrd")
    assert dlvrd["payload"]["chatId"] == bob_id and dlvrd["payload"]["messageId"] == 1
    assert dlvrd["payload"]["clientMessageId"] == "p1"

    # Typing reaches the peer with the typer as chatId.
    await alice.send(json.dumps({"type": "event", "payloadType": "typing", "payload": {"chatId": bob_id}}))
    typing = await next_event(bob, "typing")
    assert typing["payload"] == {"userId": alice_id, "chatId": alice_id}

    # Online recipient: delivered at once; read marks everything before it.
    await ok(alice, "2", "new", {"chatId": bob_id, "message": "second", "clientMessageId": "p2"})
    new = await next_event(bob, "new")
    assert new["payload"]["messageId"] == 2 and new["payload"]["missed"] == 2
    assert (await next_event(alice, "dlvrd"))["payload"]["messageId"] == 2
    read = await ok(bob, "r", "read", {"chatId": alice_id, "messageId": 2})
    assert read["messageId"] == 2 and read["missed"] == 0 and read["clientMessageId"] == "p2"
    event = await next_event(alice, "read")
    assert event["payload"]["messageId"] == 2 and event["payload"]["timestamp"] == read["timestamp"]
    # And back: bob writes, alice reads, bob hears it.
    await ok(bob, "w", "new", {"chatId": alice_id, "message": "third", "clientMessageId": "p3"})
    assert (await next_event(alice, "new"))["payload"]["chatId"] == bob_id
    await ok(alice, "3", "read", {"chatId": bob_id})
    assert (await next_event(bob, "read"))["payload"]["clientMessageId"] == "p3"

    # Bob's client goes away: alice gets offline with lastSeen.
    before = int(time.time() * 1000) - 1000
    await bob.send(json.dumps({"type": "event", "payloadType": "offline"}))
    offline = await next_event(alice, "offline")
    assert offline["payload"]["userId"] == bob_id and offline["payload"]["lastSeen"] >= before
    await alice.close()


async def resend_coalesce_and_silence():
    with private_server("--big-silence-ms", "2500", "--big-resend-ms", "300", shards=2) as (port, data_dir):
        url = f"ws://127.0.0.1:{port}"
        http = f"http://127.0.0.1:{port}"
        data = data_dir
        alice = await connect("py-alice", ws_url=url, data_dir=data)
        bob = await connect("py-bob", ws_url=url, data_dir=data)

        # Resent until acknowledged.
        await ok(alice, "1", "new", {"chatId": "py-bob", "message": "ack me"})
        first = await next_event(bob, "new")
        again = await next_event(bob, "new")
        assert again["id"] == first["id"] and again["payload"] == first["payload"]
        await bob.send(json.dumps({"type": "ack", "id": first["id"]}))
        await asyncio.sleep(0.35)
        later = await events_within(bob, 0.9)
        assert not [e for e in later if e["eventType"] == "new"], later

        # Chat lists coalesce: three new groups, the re-sent list is only the newest one.
        for ws in (alice, bob):
            await ws.send("ping")
        service = token("backend", "service", data_dir=data)
        for name in ("g1", "g2", "g3"):
            status, _ = rest("POST", "/api/v1/rooms", service, {"name": name, "members": ["py-bob"]}, url=http)
            assert status == 201
            await asyncio.sleep(0.06)
        await events_within(bob, 0.4)
        lists = [e for e in await events_within(bob, 1.0) if e["eventType"] == "chats"]
        assert lists and len(lists) <= 4, lists
        assert {e["id"] for e in lists} == {lists[0]["id"]}
        assert len(lists[0]["payload"]) == 4  # the dialog and three groups

        # Silence: bob stops talking; after 2.5 s he is closed and alice (pinging) sees offline.
        started, offline = time.monotonic(), None
        while time.monotonic() - started < 6 and offline is None:
            await alice.send("ping")
            for e in await events_within(alice, 0.2):
                if e["eventType"] == "offline":
                    offline = e
        assert offline and offline["payload"]["userId"] == "py-bob"
        try:
            while True:
                await asyncio.wait_for(bob.recv(), 3)
        except websockets.exceptions.ConnectionClosed:
            pass
        assert bob.close_code == 1011
        await alice.close()


def test_big_auth_ping_error_form_and_duplicate_ids():
    asyncio.run(auth_ping_and_errors())


def test_big_dialog_both_ways_and_cross_dialect_group():
    asyncio.run(dialog_and_cross_dialect())


def test_big_presence_typing_and_receipts_both_ways():
    asyncio.run(presence_typing_receipts())


def test_big_resend_until_ack_coalescing_and_silence_offline():
    asyncio.run(resend_coalesce_and_silence())
