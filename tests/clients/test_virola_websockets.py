"""Virola /api/v1/events with the Python `websockets` client against a running roomcast.

Environment: ROOMCAST_URL (http://127.0.0.1:PORT) and ROOMCAST_BIN (the binary, for `token`)
and ROOMCAST_DATA_DIR (the server's data directory, whose jwt_secret `token` uses).
"""

import asyncio
import json
import os
import subprocess
import urllib.request

import websockets

URL = os.environ.get("ROOMCAST_URL", "http://127.0.0.1:18080")
WS = URL.replace("http://", "ws://")
BIN = os.environ.get("ROOMCAST_BIN", "target/release/roomcast")
DATA_DIR = os.environ.get("ROOMCAST_DATA_DIR", "data")


def token(user, role=None):
    args = [BIN, "token", "--user", user, "--data-dir", DATA_DIR]
    if role:
        args += ["--role", role]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


def rest(method, path, tok, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + tok)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


async def next_event(ws, kind, timeout=5):
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if event["type"] == kind:
            return event


async def silent(ws, seconds):
    try:
        frame = await asyncio.wait_for(ws.recv(), seconds)
    except asyncio.TimeoutError:
        return True
    raise AssertionError(f"unexpected frame: {frame}")


async def scenario():
    service = token("backend", "service")
    status, body = rest("POST", "/api/v1/rooms", service, {"name": "py", "members": ["py-alice", "py-bob"]})
    assert status == 201, body
    room = body["room"]["id"]

    alice = await websockets.connect(WS + "/api/v1/events", additional_headers={"Authorization": "Bearer " + token("py-alice")})
    bob = await websockets.connect(WS + "/api/v1/events?access_token=" + token("py-bob"))
    carol = await websockets.connect(WS + "/api/v1/events", additional_headers={"Cookie": "VirolaUserSessionId=" + token("py-carol")})
    await asyncio.sleep(0.2)

    status, body = rest("POST", f"/api/v1/rooms/{room}/messages", token("py-alice"), {"text": "hello from python"})
    assert status == 201, body
    for ws in (alice, bob):
        event = await next_event(ws, "TextMessagesCreated")
        message = event["data"]["messages"][0]
        assert message["text"] == "hello from python"
        assert message["roomId"] == room
        assert message["messageId"] == body["message"]["id"]
        assert message["userId"] == "py-alice"
    assert await silent(carol, 0.5)

    try:
        await websockets.connect(WS + "/api/v1/events", additional_headers={"Authorization": "Bearer nope"})
        raise AssertionError("a bad token was accepted")
    except websockets.exceptions.InvalidStatus as e:
        assert e.response.status_code == 401
    for ws in (alice, bob, carol):
        await ws.close()


def test_virola_header_query_and_cookie_auth_deliver_to_members_only():
    asyncio.run(scenario())
