# Rechat (Socket.IO at /socket.io/) with python-socketio 5 (Engine.IO 4, as socket.io-client 4).
#   pip install python-socketio aiohttp  (the asyncio client needs aiohttp)
#   ROOMCAST_URL=http://127.0.0.1:8080 ROOMCAST_TOKEN=<jwt> python3 rechat.py
import asyncio
import os

import socketio

URL = os.environ.get("ROOMCAST_URL", "http://127.0.0.1:8080")
TOKEN = os.environ["ROOMCAST_TOKEN"]


async def main():
    sio = socketio.AsyncClient()
    first = asyncio.get_running_loop().create_future()

    @sio.on("Message.Sent")
    async def message_sent(room, message):
        print(f"Message.Sent room={room['id']} id={message['id']} "
              f"from={message['author']['id']}: {message['comment']}")
        if not first.done():
            first.set_result(None)

    await sio.connect(URL)  # polling, then upgrades to WebSocket
    # No credentials at the handshake: authenticate in band. After a reconnect (python-socketio
    # reconnects by itself) call it again, or pass auth={"token": TOKEN} to connect() instead.
    ack = await sio.call("Authenticate", TOKEN)  # (None, user), or the error object alone
    if not isinstance(ack, tuple):
        print("refused", ack)  # {'http': 401, 'message': ..., 'code': 'UnauthorizedAccess'}
        return await sio.disconnect()
    print(f"connected as {ack[1]['id']}", flush=True)
    await first  # this example stops at the first message; a client keeps listening
    await sio.disconnect()


asyncio.run(main())
