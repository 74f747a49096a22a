// BIG messenger (/websocket) with the `ws` package. The token goes in the Authorization
// header, as BIG's server expects (a browser, which cannot set it, uses ?access_token=).
//   ROOMCAST_URL=http://127.0.0.1:8080 ROOMCAST_TOKEN=<jwt> node big.mjs
import WebSocket from "ws";

const base = (process.env.ROOMCAST_URL ?? "http://127.0.0.1:8080").replace(/^http/, "ws");
const ws = new WebSocket(`${base}/websocket`, {
  headers: { Authorization: `Bearer ${process.env.ROOMCAST_TOKEN}` }, // bad token: HTTP 401
});
let keepalive;
ws.on("open", () => {
  keepalive = setInterval(() => ws.send("ping"), 10_000); // silent for 20 s: closed with 1011
  ws.send(JSON.stringify({ type: "request", id: "1", timestamp: Date.now(), payloadType: "chats", payload: {} }));
});
ws.on("message", (data) => {
  const frame = JSON.parse(data);
  if (frame.type === "response" && frame.id === "1") {
    console.log(`connected, ${frame.payload.length} chats`);
  } else if (frame.type === "event") {
    ws.send(JSON.stringify({ type: "ack", id: frame.id })); // else it is re-sent every 5 s
    if (frame.eventType === "new") {
      const p = frame.payload;
      console.log(`new chatId=${p.chatId} messageId=${p.messageId} sender=${p.sender}: ${p.message}`);
      ws.close(); // this example stops at the first message; a client keeps listening
    }
  } else if (frame.error) {
    console.log("error", JSON.stringify(frame.error));
  } // {"event":"pong"} answers a ping
});
ws.on("error", (e) => console.log(e.message)); // a refused upgrade: "Unexpected server response: 401"
ws.on("close", (code) => {
  clearInterval(keepalive);
  console.log(`closed ${code}`);
});
