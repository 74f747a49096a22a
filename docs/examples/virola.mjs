// Virola events (/api/v1/events) with the `ws` package; in a browser, drop the import and use
// the built-in WebSocket: the code is the same.
//   ROOMCAST_URL=http://127.0.0.1:8080 ROOMCAST_TOKEN=<jwt> node virola.mjs
import WebSocket from "ws";

const base = (process.env.ROOMCAST_URL ?? "http://127.0.0.1:8080").replace(/^http/, "ws");
const token = process.env.ROOMCAST_TOKEN;

// A browser cannot set headers on a WebSocket: the token goes in the query (or the
// VirolaUserSessionId cookie). A bad token fails the upgrade with HTTP 401.
const ws = new WebSocket(`${base}/api/v1/events?access_token=${encodeURIComponent(token)}`);
ws.onopen = () => console.log("connected");
ws.onmessage = (e) => {
  const event = JSON.parse(e.data); // {"type": "<EventName>", "data": {...}}
  if (event.type === "TextMessagesCreated") {
    for (const m of event.data.messages) {
      console.log(`TextMessagesCreated room=${m.roomId} id=${m.messageId} from=${m.userId}: ${m.text}`);
    }
    ws.close(); // this example stops at the first message; a client keeps listening
  }
};
ws.onerror = (e) => console.log(e.message); // a refused upgrade: "Unexpected server response: 401"
ws.onclose = (e) => console.log(`closed ${e.code}`);
