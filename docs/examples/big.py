# BIG messenger (/websocket) with `websockets` (>= 14).
#   ROOMCAST_URL=http://127.0.0.1:8080 ROOMCAST_TOKEN=<jwt> python3 big.py
import asyncio
import json
import os
import time

import websockets

URL = os.environ.get("ROOMCAST_URL", "http://127.0.0.1:8080").replace("http", "ws", 1)
TOKEN = os.environ["ROOMCAST_TOKEN"]


async def keepalive(ws):
    while True:  # a socket silent for 20 s is closed with 1011
        await asyncio.sleep(10)
        await ws.send("ping")  # answered with {"event":"pong"}


async def main():
    headers = {"Authorization": "Bearer " + TOKEN}  # a bad token: HTTP 401 before the upgrade
    async with websockets.connect(URL + "/websocket", additional_headers=headers) as ws:
        pinger = asyncio.create_task(keepalive(ws))
        await ws.send(json.dumps({"type": "request", "id": "1", "timestamp": int(time.time() * 1000),
                                  "payloadType": "chats", "payload": {}}))
        async for text in ws:
            frame = json.loads(text)
            if frame.get("type") == "response" and frame["id"] == "1":
                print(f"connected, {len(frame['payload'])} chats", flush=True)
            elif frame.get("type") == "event":
                await ws.send(json.dumps({"type": "ack", "id": frame["id"]}))  # else re-sent every 5 s
                if frame["eventType"] == "new":
                    p = frame["payload"]
                    print(f"new chatId={p['chatId']} messageId={p['messageId']} "
                          f"sender={p['sender']}: {p['message']}")
                    break  # this example stops at the first message; a client keeps listening
            elif "error" in frame:
                print("error", frame["error"])
        pinger.cancel()


asyncio.run(main())
