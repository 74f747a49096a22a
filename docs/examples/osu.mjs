// osu! notification websocket (/notifications) with the `ws` package; in a browser, drop the
// import and use the built-in WebSocket.
//   ROOMCAST_URL=http://127.0.0.1:8080 ROOMCAST_TOKEN=<jwt> node osu.mjs
import WebSocket from "ws";

const base = (process.env.ROOMCAST_URL ?? "http://127.0.0.1:8080").replace(/^http/, "ws");
const token = process.env.ROOMCAST_TOKEN;

// Authorization: Bearer works outside a browser; ?access_token= is used only when no
// Authorization header is sent.
const ws = new WebSocket(`${base}/notifications?access_token=${encodeURIComponent(token)}`);
ws.onmessage = (e) => {
  const msg = JSON.parse(e.data);
  if (msg.error) return console.log(`refused: ${msg.error}`); // then the server drops the socket
  switch (msg.event) {
    case "connection.ready": // authenticated and subscribed: ask for chat events
      ws.send(JSON.stringify({ event: "chat.start" }));
      console.log("connected");
      break;
    case "chat.message.new":
      for (const m of msg.data.messages) {
        console.log(`chat.message.new channel=${m.channel_id} id=${m.message_id} from=${m.sender_id}: ${m.content}`);
      }
      ws.close(); // this example stops at the first message; a client keeps listening
      break;
    case "logout": // the session was logged out: do not reconnect
      console.log("logged out");
      break;
  }
};
ws.onclose = (e) => console.log(`closed ${e.code}`);
