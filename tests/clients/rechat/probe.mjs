// Smoke probe of roomcast's Rechat dialect with the real Socket.IO clients:
// socket.io-client 2.x (Engine.IO 3) and 4.x (Engine.IO 4), each over long-polling (with the
// upgrade to WebSocket the client attempts) and over WebSocket only.
//
//   node probe.mjs [URL] [TOKEN]     (defaults: http://127.0.0.1:8080, $ROOMCAST_TOKEN)
//
// For each combination it prints what it sees (connect, the transport, events received, the
// Authenticate ack when a token is given, errors) and exits 1 unless all four connected.
import sio2 from "sio2";
import { io as sio4 } from "sio4";

const url = process.argv[2] ?? "http://127.0.0.1:8080";
const token = process.argv[3] ?? process.env.ROOMCAST_TOKEN;
const WAIT_MS = 4000;

const clients = [
  ["socket.io-client@2 (EIO=3)", (opts) => sio2(url, { ...opts, forceNew: true })],
  ["socket.io-client@4 (EIO=4)", (opts) => sio4(url, { ...opts, forceNew: true })],
];
const transports = [["polling", ["polling", "websocket"]], ["websocket", ["websocket"]]];

function log(label, what, detail) {
  const text = detail === undefined ? "" : " " + JSON.stringify(detail);
  console.log(`[${label}] ${what}${text}`);
}

function transportOf(socket) {
  const engine = socket.io?.engine;
  return engine?.transport?.name ?? "?";
}

function probe(name, make, transportName, list) {
  const label = `${name} ${transportName}`;
  return new Promise((resolve) => {
    const socket = make({ transports: list, reconnection: false, timeout: WAIT_MS });
    let connected = false;
    const done = (ok, why) => {
      clearTimeout(timer);
      if (why) log(label, why);
      socket.close();
      resolve({ label, ok });
    };
    const timer = setTimeout(() => done(connected, connected ? "done" : "timeout"), WAIT_MS + 500);
    // Every incoming event: v4 has onAny; v2 goes through onevent.
    if (typeof socket.onAny === "function") {
      socket.onAny((event, ...args) => log(label, `event ${event}`, args));
    } else {
      const onevent = socket.onevent;
      socket.onevent = function (packet) {
        log(label, `event ${packet.data?.[0]}`, packet.data?.slice(1));
        onevent.call(this, packet);
      };
    }
    socket.on("connect", () => {
      connected = true;
      log(label, "connected", { id: socket.id, transport: transportOf(socket) });
      socket.io?.engine?.on?.("upgrade", (t) => log(label, "upgraded", t?.name));
      if (!token) return;
      socket.emit("Authenticate", token, (err, user) => {
        log(label, "Authenticate ack", { err, user });
      });
    });
    socket.on("connect_error", (err) => done(false, `connect_error: ${err?.message ?? err}`));
    socket.on("connect_timeout", () => done(false, "connect_timeout"));
    socket.on("error", (err) => log(label, `error: ${err?.message ?? err}`));
    socket.on("disconnect", (reason) => log(label, "disconnect", reason));
  });
}

const results = [];
for (const [name, make] of clients) {
  for (const [transportName, list] of transports) {
    results.push(await probe(name, make, transportName, list));
  }
}
console.log("\nsummary:");
for (const { label, ok } of results) console.log(`  ${ok ? "ok  " : "FAIL"} ${label}`);
process.exit(results.every((r) => r.ok) ? 0 : 1);
