"""Virola /api/v1/events with the Python `websockets` client against a running roomcast.

Environment: ROOMCAST_URL (http://127.0.0.1:PORT) and ROOMCAST_BIN (the binary, for `token`)
and ROOMCAST_DATA_DIR (the server's data directory, whose jwt_secret `token` uses).
"""

import asyncio
import json

import websockets

from roomcast_client import WS, rest, silent, token


async def next_event(ws, kind, timeout=5):
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), timeout))
        if event["type"] == kind:
            return event


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
