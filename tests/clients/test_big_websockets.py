"""BIG messenger /websocket with the Python `websockets` client against a running roomcast.

Environment: ROOMCAST_URL (http://127.0.0.1:PORT, a server with 2 shards), ROOMCAST_BIN (the
binary: `token`, and a second server with a short silence timeout) and ROOMCAST_DATA_DIR (the
server's data directory, whose jwt_secret `token` uses).
"""

import asyncio
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid

import websockets

URL = os.environ.get("ROOMCAST_URL", "http://127.0.0.1:18080")
WS = URL.replace("http://", "ws://")
BIN = os.environ.get("ROOMCAST_BIN", "target/release/roomcast")
DATA_DIR = os.environ.get("ROOMCAST_DATA_DIR", "data")


def token(user, role=None, data_dir=None):
    args = [BIN, "token", "--user", user, "--data-dir", data_dir or DATA_DIR]
    if role:
        args += ["--role", role]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def rest(method, path, tok, body=None, url=URL):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + tok)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


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

    sent = await ok(alice, "1", "new", {"chatId": bob_id, "message": "hello", "clientMessageId": "py-c1"})
    assert sent["messageId"] == 1 and sent["clientMessageId"] == "py-c1"
    new = await next_event(bob, "new")
    assert new["payload"]["chatId"] == alice_id and new["payload"]["sender"] == alice_id
    assert new["payload"]["messageId"] == 1 and new["payload"]["message"] == "hello"
    await bob.send(json.dumps({"type": "ack", "id": new["id"]}))

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


async def silence_close():
    work = tempfile.mkdtemp()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", work + "/data",
                               "--shards", "1", "--no-pin-cpus", "--big-silence-ms", "500"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        url = f"ws://127.0.0.1:{port}"
        quiet = await connect("py-quiet", ws_url=url, data_dir=work + "/data")
        chatty = await connect("py-chatty", ws_url=url, data_dir=work + "/data")
        started = time.monotonic()
        for _ in range(8):
            await chatty.send("ping")
            assert await recv_json(chatty) == {"event": "pong"}
            await asyncio.sleep(0.2)
        try:
            await asyncio.wait_for(quiet.recv(), 3)
            raise AssertionError("a frame on the quiet socket")
        except websockets.exceptions.ConnectionClosed:
            pass
        assert quiet.close_code == 1011
        assert time.monotonic() - started < 4
        assert await ok(chatty, "x", "chats", {}) == []
        await chatty.close()
    finally:
        server.terminate()
        server.wait()


def test_big_auth_ping_error_form_and_duplicate_ids():
    asyncio.run(auth_ping_and_errors())


def test_big_dialog_both_ways_and_cross_dialect_group():
    asyncio.run(dialog_and_cross_dialect())


def test_big_silence_closes_with_1011():
    asyncio.run(silence_close())
