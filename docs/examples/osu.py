# osu! notification websocket (/notifications) with `websockets` (>= 14).
#   ROOMCAST_URL=http://127.0.0.1:8080 ROOMCAST_TOKEN=<jwt> python3 osu.py
import asyncio
import json
import os

import websockets

URL = os.environ.get("ROOMCAST_URL", "http://127.0.0.1:8080").replace("http", "ws", 1)
TOKEN = os.environ["ROOMCAST_TOKEN"]


async def main():
    headers = {"Authorization": "Bearer " + TOKEN}
    async with websockets.connect(URL + "/notifications", additional_headers=headers) as ws:
        async for frame in ws:
            msg = json.loads(frame)
            if "error" in msg:  # {"error": "authentication failed"}, then the socket is dropped
                print("refused:", msg["error"])
                return
            if msg.get("event") == "connection.ready":
                await ws.send(json.dumps({"event": "chat.start"}))  # chat events from now on
                print("connected", flush=True)
            elif msg.get("event") == "chat.message.new":
                for m in msg["data"]["messages"]:
                    print(f"chat.message.new channel={m['channel_id']} id={m['message_id']} "
                          f"from={m['sender_id']}: {m['content']}")
                return  # this example stops at the first message; a client keeps listening
            elif msg.get("event") == "logout":  # the session was logged out: do not reconnect
                print("logged out")


asyncio.run(main())
