// The Rechat dialect with the real Socket.IO clients: socket.io-client 2 (Engine.IO 3, npm alias
// sio2) and 4 (Engine.IO 4, sio4), over WebSocket and over long-polling, against a running
// server.
//
//   ROOMCAST_URL=http://127.0.0.1:PORT ROOMCAST_BIN=target/release/roomcast \
//   ROOMCAST_DATA_DIR=<the server's data dir> node --test tests/clients/rechat/
//
// Over TLS: ROOMCAST_URL=https://127.0.0.1:PORT and NODE_EXTRA_CA_CERTS=<the test CA's PEM>
// (fetch, ws and both Socket.IO clients then trust the server's certificate).
//
// Tokens come from `roomcast token` (the server's jwt_secret in its data directory); rooms are
// made through REST with a service token. User names are unique per run, so the tests share a
// server with other client tests.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import sio2 from "sio2";
import { io as sio4 } from "sio4";
import WebSocket from "ws";

const URL = process.env.ROOMCAST_URL ?? "http://127.0.0.1:18080";
const BIN = process.env.ROOMCAST_BIN ?? "target/release/roomcast";
const DATA_DIR = process.env.ROOMCAST_DATA_DIR ?? "data";
const RUN = Math.random().toString(36).slice(2, 8);
const WAIT_MS = 5000;

function token(user, { role, sid, dataDir } = {}) {
  const args = ["token", "--user", user, "--data-dir", dataDir ?? DATA_DIR];
  if (role) args.push("--role", role);
  if (sid) args.push("--sid", sid);
  return execFileSync(BIN, args, { encoding: "utf8" }).trim();
}

const SERVICE = token("backend", { role: "service" });

async function rest(method, path, tok, body) {
  const headers = { Authorization: `Bearer ${tok}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(URL + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

async function createRoom(name, members) {
  const r = await rest("POST", "/api/v1/rooms", SERVICE, { name, members });
  assert.equal(r.status, 201, JSON.stringify(r.json));
  return String(r.json.room.id);
}

const user = (name) => `${name}-${RUN}`;

const CLIENTS = {
  v2: (opts = {}, url = URL) =>
    sio2(url, { forceNew: true, reconnection: false, transports: ["websocket"], ...opts }),
  v4: (opts = {}, url = URL) =>
    sio4(url, { forceNew: true, reconnection: false, transports: ["websocket"], ...opts }),
};

// A client socket that records every event from the start, so none is missed while a test
// awaits something else.
class Client {
  constructor(version, opts, url) {
    this.version = version;
    this.socket = CLIENTS[version](opts, url);
    this.events = [];
    this.waiters = [];
    const record = (name, args) => {
      this.events.push({ name, args });
      this.waiters = this.waiters.filter((w) => !w.try());
    };
    if (typeof this.socket.onAny === "function") {
      this.socket.onAny((name, ...args) => record(name, args));
    } else {
      const onevent = this.socket.onevent;
      const self = this;
      this.socket.onevent = function (packet) {
        const [name, ...args] = packet.data ?? [];
        record(name, args);
        onevent.call(this, packet);
      };
    }
  }

  connected() {
    return new Promise((resolve, reject) => {
      if (this.socket.connected) return resolve();
      const timer = setTimeout(() => reject(new Error(`${this.version}: no connect`)), WAIT_MS);
      this.socket.once("connect", () => {
        clearTimeout(timer);
        resolve();
      });
      this.socket.once("connect_error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  // The arguments of the first recorded event `name` whose arguments satisfy `pred`, taken
  // out of the record (waits up to WAIT_MS).
  event(name, pred = () => true) {
    return new Promise((resolve, reject) => {
      const waiter = {
        try: () => {
          const i = this.events.findIndex((e) => e.name === name && pred(...e.args));
          if (i < 0) return false;
          const [found] = this.events.splice(i, 1);
          clearTimeout(waiter.timer);
          resolve(found.args);
          return true;
        },
      };
      if (waiter.try()) return;
      waiter.timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== waiter);
        reject(new Error(`${this.version}: no ${name} event`));
      }, WAIT_MS);
      this.waiters.push(waiter);
    });
  }

  // Resolves when no event `name` satisfying `pred` arrives within `ms`.
  async none(name, pred = () => true, ms = 500) {
    await new Promise((r) => setTimeout(r, ms));
    const found = this.events.find((e) => e.name === name && pred(...e.args));
    assert.equal(found, undefined, `unexpected ${name} ${JSON.stringify(found?.args)}`);
  }

  // Emits `name` with `args` and resolves with the callback's arguments.
  call(name, ...args) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.version}: no ack of ${name}`)), WAIT_MS);
      this.socket.emit(name, ...args, (...reply) => {
        clearTimeout(timer);
        resolve(reply);
      });
    });
  }

  async authenticate(name, dataDir) {
    const [err, me] = await this.call("Authenticate", token(name, { dataDir }));
    assert.equal(err, null);
    assert.equal(me.id, name);
    assert.equal(me.type, "user");
    return me;
  }

  // Resolves once the engine runs on WebSocket (after the polling → WebSocket upgrade).
  upgraded() {
    const engine = this.socket.io.engine;
    return new Promise((resolve, reject) => {
      if (engine.transport.name === "websocket") return resolve();
      const timer = setTimeout(() => reject(new Error(`${this.version}: no upgrade`)), WAIT_MS);
      engine.once("upgrade", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  close() {
    this.socket.close();
  }
}

async function connect(version, opts, url) {
  const client = new Client(version, opts, url);
  await client.connected();
  return client;
}

// Each client in each transport: WebSocket only, long-polling only, and the defaults
// (long-polling first, then the upgrade to WebSocket through the probe).
const MODES = [
  ["v2", "websocket"],
  ["v4", "websocket"],
  ["v2", "polling"],
  ["v4", "polling"],
  ["v2", "upgrade"],
  ["v4", "upgrade"],
];
const TRANSPORTS = { websocket: ["websocket"], polling: ["polling"], upgrade: ["polling", "websocket"] };
const transportsOf = (mode) => TRANSPORTS[mode];

for (const [version, mode] of MODES) {
  const opts = { transports: transportsOf(mode) };
  test(`${version} ${mode}: connects and authenticates; refusals have Rechat's shape`, async () => {
    const alice = user(`alice-auth-${version}-${mode}`);
    const c = await connect(version, opts);
    if (mode === "upgrade") {
      // Connected over polling, then upgraded.
      await c.upgraded();
      assert.equal(c.socket.io.engine.transport.name, "websocket");
    } else {
      assert.equal(c.socket.io.engine.transport.name, mode);
    }
    // Before Authenticate every action is refused through its callback.
    const room = await createRoom("auth", [alice]);
    const [early] = await c.call("Message.Send", room, { comment: "x", message_type: "TopLevel" });
    assert.deepEqual(early, { http: 401, message: "Authentication required", code: "UnauthorizedAccess" });
    const [bad, nobody] = await c.call("Authenticate", "not-a-token");
    assert.deepEqual(bad, { http: 401, message: "Invalid credentials", code: "UnauthorizedAccess" });
    assert.equal(nobody, undefined);
    await c.authenticate(alice);
    const [online] = await c.event("Users.Online");
    assert.deepEqual(online, [alice]);
    c.close();
    // A new socket (a reconnect) authenticates again.
    const again = await connect(version, opts);
    await again.authenticate(alice);
    again.close();
  });

  test(`${version} ${mode}: messages, notifications, typing, presence and membership`, async () => {
    const [alice, bob, carol] = ["alice", "bob", "carol"].map((n) => user(`${n}-${version}-${mode}`));
    const room = await createRoom("Buyers", [alice, bob]);
    const b = await connect("v2");
    await b.authenticate(bob);
    const virola = new WebSocket(URL.replace("http", "ws") + "/api/v1/events", {
      headers: { Authorization: `Bearer ${token(bob)}` },
    });
    const virolaFrames = [];
    virola.on("message", (data) => virolaFrames.push(JSON.parse(String(data))));
    await new Promise((resolve, reject) => {
      virola.once("open", resolve);
      virola.once("error", reject);
    });

    const a = await connect(version, opts);
    await a.authenticate(alice);
    const [online] = await a.event("Users.Online");
    assert.deepEqual(online, [alice, bob].sort());
    await b.event("User.Online", (id) => id === alice);
    await a.event("User.Online", (id) => id === alice);

    // Message.Send: stored before the ack, then Message.Sent and Notification to every member.
    const [err, message] = await a.call("Message.Send", room, {
      comment: "Is the open house still on?",
      message_type: "TopLevel",
    });
    assert.equal(err, null);
    assert.equal(message.type, "message");
    assert.equal(message.comment, "Is the open house still on?");
    assert.equal(message.room, room);
    const history = await rest("GET", `/api/v1/rooms/${room}/messages`, token(bob));
    assert.ok(history.json.messages.some((m) => String(m.id) === message.id));
    for (const c of [a, b]) {
      const [r, m] = await c.event("Message.Sent", (_r, m) => m.id === message.id);
      assert.equal(r.type, "room");
      assert.equal(r.id, room);
      assert.equal(r.users.length, 2);
      assert.equal(m.author.id, alice);
      assert.equal(typeof m.created_at, "number");
      const [n] = await c.event("Notification", (n) => n.room === room);
      assert.equal(n.type, "notification");
      assert.equal(n.notification_type, "UserSentMessage");
    }
    // The same message reaches the Virola socket of the room.
    for (let i = 0; i < 50 && !virolaFrames.some((f) => f.type === "TextMessagesCreated"); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    const created = virolaFrames.find((f) => f.type === "TextMessagesCreated");
    assert.equal(created?.data?.messages?.[0]?.text, "Is the open house still on?");

    // A REST post reaches Rechat sockets as Message.Sent.
    const posted = await rest("POST", `/api/v1/rooms/${room}/messages`, token(bob), { text: "from rest" });
    assert.equal(posted.status, 201);
    const [, fromRest] = await a.event("Message.Sent", (_r, m) => m.comment === "from rest");
    assert.equal(fromRest.author.id, bob);

    // Typing: the room, typer included, gets one object; a non-member types nowhere.
    a.socket.emit("User.Typing", room);
    for (const c of [a, b]) {
      const [t] = await c.event("User.Typing");
      assert.deepEqual(t, { user_id: alice, room_id: room });
    }
    a.socket.emit("User.TypingEnded", room);
    assert.deepEqual((await b.event("User.TypingEnded"))[0], { user_id: alice, room_id: room });
    const outsider = await connect(version, opts);
    await outsider.authenticate(carol);
    outsider.socket.emit("User.Typing", room);
    await b.none("User.Typing", (t) => t.user_id === carol);

    // Membership: carol is added; the room hears Room.UserJoined, and carol's open socket
    // receives the room at once.
    const added = await rest("PUT", `/api/v1/rooms/${room}/members/${carol}`, SERVICE);
    assert.equal(added.status, 200);
    const [joined] = await b.event("Room.UserJoined");
    assert.equal(joined.id, carol);
    assert.equal(joined.type, "user");
    await rest("POST", `/api/v1/rooms/${room}/messages`, token(bob), { text: "welcome" });
    await outsider.event("Message.Sent", (_r, m) => m.comment === "welcome");

    // With the defaults, the events above flowed across the upgrade, and it happened.
    if (mode === "upgrade") {
      await a.upgraded();
      await outsider.upgraded();
    }

    // Offline: bob's last Rechat socket closes.
    b.close();
    assert.deepEqual(await a.event("User.Offline"), [bob]);
    virola.close();
    a.close();
    outsider.close();
  });
}

test("v4: the token in the CONNECT packet's auth authenticates", async () => {
  const dora = user("dora");
  const room = await createRoom("auth-in-connect", [dora]);
  const c = await connect("v4", { auth: { token: token(dora) } });
  assert.deepEqual((await c.event("Users.Online"))[0], [dora]);
  const [err, message] = await c.call("Message.Send", room, { comment: "hi", message_type: "TopLevel" });
  assert.equal(err, null);
  assert.equal(message.comment, "hi");
  c.close();
  // A bad one is a connect_error carrying Rechat's error object.
  const refused = new Client("v4", { auth: { token: "nope" } });
  await assert.rejects(refused.connected(), (e) => e.message === "Invalid credentials" && e.data?.code === "UnauthorizedAccess");
  refused.close();
});

for (const [version, mode] of MODES) {
  test(`${version} ${mode}: logging the session out closes its sockets`, async () => {
    const erin = user(`erin-${version}-${mode}`);
    const sid = `rechat-${RUN}-${version}-${mode}`;
    const tok = token(erin, { sid });
    const c = await connect(version, { transports: transportsOf(mode) });
    const [err] = await c.call("Authenticate", tok);
    assert.equal(err, null);
    const gone = new Promise((resolve) => c.socket.once("disconnect", resolve));
    const r = await rest("DELETE", `/api/v1/sessions/${sid}`, tok);
    assert.equal(r.status, 204);
    assert.equal(await gone, "io server disconnect");
  });
}

// A server of our own with short Engine.IO keepalive settings: both clients keep their
// connection through many ping intervals (v2 pings, v4 is pinged) and stay usable.
test("keepalive: both clients stay connected across many short ping intervals", async () => {
  const work = mkdtempSync(path.join(os.tmpdir(), "rechat-"));
  const port = await new Promise((resolve) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
  const server = spawn(BIN, ["serve", "--listen", `127.0.0.1:${port}`, "--data-dir", `${work}/data`,
    "--shards", "2", "--no-pin-cpus", "--rechat-ping-interval-ms", "200",
    "--rechat-ping-timeout-ms", "300"], { stdio: "ignore" });
  try {
    const url = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 100; i++) {
      try {
        if ((await fetch(url + "/healthz")).ok) break;
      } catch {}
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const [version, mode] of MODES) {
      const c = await connect(version, { transports: transportsOf(mode) }, url);
      const engine = c.socket.io.engine;
      assert.equal(engine.pingInterval ?? engine._pingInterval, 200);
      const dropped = [];
      c.socket.on("disconnect", (reason) => dropped.push(reason));
      await new Promise((r) => setTimeout(r, 1500));
      assert.deepEqual(dropped, []);
      await c.authenticate(user(`keepalive-${version}-${mode}`), `${work}/data`);
      c.close();
    }
  } finally {
    server.kill("SIGTERM");
  }
});
