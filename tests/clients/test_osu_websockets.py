"""osu! /notifications with the Python `websockets` client against a running roomcast.

Environment: ROOMCAST_URL (http://127.0.0.1:PORT, a server with 2 shards), ROOMCAST_BIN (the
binary: `token`, and a second server with a short ping interval for the missed-pong case) and
ROOMCAST_DATA_DIR (the server's data directory, whose jwt_secret `token` uses).
"""

import asyncio
import json
import socket
import time

import websockets

from roomcast_client import WS, private_server, rest, silent, token


async def connect(tok, path="/notifications", query=False, ws_url=WS):
    if query:
        ws = await websockets.connect(ws_url + path + "?access_token=" + tok)
    else:
        ws = await websockets.connect(ws_url + path, additional_headers={"Authorization": "Bearer " + tok})
    return ws


async def ready(tok, **kw):
    ws = await connect(tok, **kw)
    assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"event": "connection.ready"}
    return ws


def shard_of(ws):
    return int(ws.response.headers["X-Roomcast-Shard"])


async def next_event(ws, name, timeout=5):
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if event.get("event") == name:
            return event


async def frames_until_closed(ws, timeout=5):
    frames = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), timeout)))
    except websockets.exceptions.ConnectionClosed:
        return frames


async def chat_start(ws):
    await ws.send(json.dumps({"event": "chat.start"}))
    await asyncio.sleep(0.1)


async def auth_and_chat():
    service = token("backend", "service")
    # Authentication: header, query, and a failure that completes the handshake then drops.
    alice = await ready(token("1001"))
    alice_q = await ready(token("1001"), query=True, path="/notifications/sub/path")
    bad = await connect("nope")
    assert await frames_until_closed(bad) == [{"error": "authentication failed"}]
    assert bad.close_code == 1006, "dropped without a close frame"

    users = {"2002": {"username": "bob", "avatar_url": "https://a/2002"}}
    status, body = rest("POST", "/api/v1/rooms", service,
                        {"name": "py-osu", "members": ["1001", "2002"], "attributes": {"users": users}})
    assert status == 201, body
    room = body["room"]["id"]

    # chat.start gating; junk frames are ignored without closing.
    status, _ = rest("POST", f"/api/v1/rooms/{room}/messages", token("2002"), {"text": "early"})
    assert status == 201
    assert await silent(alice, 0.3)
    for junk in ("junk", "{}", '{"event": 5}', '{"event": "chat.stop"}'):
        await alice.send(junk)
    await chat_start(alice)
    status, body = rest("POST", f"/api/v1/rooms/{room}/messages", token("2002"), {"text": "hi from bob"})
    event = await next_event(alice, "chat.message.new")
    assert len(event["data"]["messages"]) == 1
    message = event["data"]["messages"][0]
    assert message["content"] == "hi from bob" and message["sender_id"] == 2002
    assert message["message_id"] == body["message"]["id"] and message["channel_id"] == room
    assert message["timestamp"].endswith("+00:00")
    assert [u["id"] for u in event["data"]["users"]] == [2002]
    # Named from the room's attributes, as join/part name users.
    assert event["data"]["users"][0]["username"] == "bob"
    assert event["data"]["users"][0]["avatar_url"] == "https://a/2002"
    # Own message echo.
    rest("POST", f"/api/v1/rooms/{room}/messages", token("1001"), {"text": "mine"})
    assert (await next_event(alice, "chat.message.new"))["data"]["messages"][0]["sender_id"] == 1001
    assert await silent(alice_q, 0.3), "no chat.start on this one"
    await alice.send(json.dumps({"event": "chat.end"}))
    await asyncio.sleep(0.1)
    rest("POST", f"/api/v1/rooms/{room}/messages", token("2002"), {"text": "late"})
    assert await silent(alice, 0.3)

    # Join / part rendered for the joining user: a PM is named after the other member.
    status, body = rest("POST", "/api/v1/rooms", service, {"kind": "direct", "name": "dm", "members": ["1001"]})
    dm = body["room"]["id"]
    bob = await ready(token("2002"))
    await chat_start(bob)
    status, _ = rest("PUT", f"/api/v1/rooms/{dm}/members/2002", service)
    assert status == 200
    join = await next_event(bob, "chat.channel.join")
    assert join["data"]["type"] == "PM" and join["data"]["name"] == "1001" and join["data"]["users"] == [1001, 2002]
    status, _ = rest("DELETE", f"/api/v1/rooms/{dm}/members/2002", token("2002"))
    assert status == 204
    part = await next_event(bob, "chat.channel.part")
    assert part["data"]["channel_id"] == dm

    # Public rooms: only members active in the last 60 s (ack, join) get messages.
    status, body = rest("POST", "/api/v1/rooms", service, {"kind": "public", "name": "lobby", "members": ["1001", "2002"]})
    lobby = body["room"]["id"]
    await chat_start(alice)
    rest("POST", f"/api/v1/rooms/{lobby}/messages", token("2002"), {"text": "idle"})
    assert await silent(alice, 0.3)
    status, _ = rest("POST", f"/api/v1/rooms/{lobby}/ack", token("1001"))
    assert status == 204
    rest("POST", f"/api/v1/rooms/{lobby}/messages", token("2002"), {"text": "active"})
    assert (await next_event(alice, "chat.message.new"))["data"]["messages"][0]["content"] == "active"
    for ws in (alice, alice_q, bob):
        await ws.close()


async def notifications():
    service = token("backend", "service")
    full = await ready(token("3003"))
    chat_only = await ready(token("3003", scopes="chat.read"))
    await chat_start(chat_only)
    status, body = rest("POST", "/api/v1/users/3003/notifications", service, {
        "name": "forum_topic_reply", "object_type": "forum_topic", "object_id": 77,
        "source_user_id": 1001, "details": {"title": "re: hi", "post_id": 5}})
    assert status == 201, body
    nid = body["notification"]["id"]
    new = await next_event(full, "new")
    assert new["data"]["id"] == nid and new["data"]["is_read"] is False
    assert new["data"]["object_id"] == 77 and new["data"]["details"] == {"title": "re: hi", "post_id": 5}
    status, body = rest("POST", "/api/v1/notifications/read", token("3003"), {"ids": [nid]})
    assert status == 200 and body["read"] == [nid]
    read = await next_event(full, "read")
    assert read["ids"] == [nid]
    assert read["data"]["read_count"] == 1
    assert read["data"]["notifications"] == [{"category": "forum_topic", "id": nid, "object_id": 77, "object_type": "forum_topic"}]
    assert await silent(chat_only, 0.4), "chat.read-only tokens never get new/read"
    for ws in (full, chat_only):
        await ws.close()


async def logout_one_session_across_shards():
    tok_a = token("4004", sid="py-a")
    tok_b = token("4004", sid="py-b")
    a_socks, a_shards = [], set()
    while len(a_shards) < 2 and len(a_socks) < 32:
        ws = await ready(tok_a)
        a_shards.add(shard_of(ws))
        a_socks.append(ws)
    assert a_shards == {0, 1}, "the server runs 2 shards; session A lives on both"
    b_socks, b_shards = [], set()
    while len(b_shards) < 2 and len(b_socks) < 32:
        ws = await ready(tok_b)
        b_shards.add(shard_of(ws))
        b_socks.append(ws)
    status, _ = rest("DELETE", "/api/v1/sessions/py-a", tok_a)
    assert status == 204
    for ws in a_socks:
        assert await frames_until_closed(ws) == [{"event": "logout"}]
        assert ws.close_code == 1005, "a close frame without a status code"
    status, _ = rest("GET", "/api/v1/rooms", tok_a)
    assert status == 401
    again = await connect(tok_a)
    assert await frames_until_closed(again) == [{"error": "authentication failed"}]
    status, _ = rest("POST", "/api/v1/users/4004/notifications", token("backend", "service"),
                     {"name": "still", "object_type": "t", "object_id": 1})
    assert status == 201
    for ws in b_socks:
        assert (await next_event(ws, "new"))["data"]["name"] == "still"
        await ws.close()


async def missed_pong_drops():
    with private_server("--ping-interval-ms", "200", shards=1) as (port, data_dir):
        tok = token("5005", data_dir=data_dir)
        good = await ready(tok, ws_url=f"ws://127.0.0.1:{port}")
        keep_reading = asyncio.ensure_future(frames_until_closed(good, timeout=30))
        raw = socket.create_connection(("127.0.0.1", port))
        raw.sendall((f"GET /notifications HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     f"Authorization: Bearer {tok}\r\n\r\n").encode())
        raw.setblocking(False)
        started, data, ended = time.monotonic(), b"", False
        while time.monotonic() - started < 5:
            try:
                chunk = raw.recv(4096)
                if not chunk:
                    ended = True
                    break
                data += chunk
            except BlockingIOError:
                await asyncio.sleep(0.02)
            except ConnectionResetError:
                ended = True
                break
        assert ended and data.startswith(b"HTTP/1.1 101"), "a client that never answers pings is dropped"
        assert time.monotonic() - started < 2
        await asyncio.sleep(0.6)
        assert not keep_reading.done(), "a client that answers pings stays"
        await good.close()
        await keep_reading


def test_osu_auth_chat_gating_join_part_and_public_activity():
    asyncio.run(auth_and_chat())


def test_osu_notifications_new_and_read_with_scope_gating():
    asyncio.run(notifications())


def test_osu_logout_closes_exactly_one_session_on_both_shards():
    asyncio.run(logout_one_session_across_shards())


def test_osu_missed_pong_drops_the_connection():
    asyncio.run(missed_pong_drops())
