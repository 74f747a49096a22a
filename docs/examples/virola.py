# Virola events (/api/v1/events) with `websockets` (>= 14).
#   ROOMCAST_URL=http://127.0.0.1:8080 ROOMCAST_TOKEN=<jwt> python3 virola.py
import asyncio
import json
import os

import websockets

URL = os.environ.get("ROOMCAST_URL", "http://127.0.0.1:8080").replace("http", "ws", 1)
TOKEN = os.environ["ROOMCAST_TOKEN"]


async def main():
    # A bad token fails the upgrade with HTTP 401 (websockets raises InvalidStatus).
    headers = {"Authorization": "Bearer " + TOKEN}
    async with websockets.connect(URL + "/api/v1/events", additional_headers=headers) as ws:
        print("connected", flush=True)
        async for frame in ws:
            event = json.loads(frame)  # {"type": "<EventName>", "data": {...}}
            if event["type"] == "TextMessagesCreated":
                for m in event["data"]["messages"]:
                    print(f"TextMessagesCreated room={m['roomId']} id={m['messageId']} "
                          f"from={m['userId']}: {m['text']}")
                return  # this example stops at the first message; a client keeps listening


asyncio.run(main())
