// The roomcast web console: plain DOM, no framework, no build step. Served by the server
// itself (src/rest/console.rs) under a strict CSP: no inline script or style, connections
// to this origin only. Everything shown from the server goes in with textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { token: "", user: "", room: null, socket: null, refresh: 0, healthTimer: 0 };

// --- helpers -----------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, props);
  node.append(...children);
  return node;
}

function showError(message) {
  $("error").textContent = message || "";
}

// A REST call with the current token; resolves to the JSON body (or null for 204).
async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (state.token) headers.Authorization = "Bearer " + state.token;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const json = text ? JSON.parse(text) : null;
  if (!response.ok) {
    const error = json && json.error ? `${json.error.code}: ${json.error.message}` : text;
    throw new Error(`${method} ${path} → ${response.status} ${error}`);
  }
  return json;
}

// Runs an async UI action, showing its failure instead of throwing it away.
function guarded(action) {
  return async (event) => {
    if (event && event.preventDefault) event.preventDefault();
    showError("");
    try {
      await action(event);
    } catch (e) {
      showError(e.message);
    }
  };
}

// The claims of a JWT (unverified: the server checks it).
function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(
      Array.from(atob(part), (c) => "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""),
    );
    return JSON.parse(json);
  } catch {
    return null;
  }
}

// --- token -------------------------------------------------------------------------------

function setToken(token) {
  state.token = token.trim();
  $("token").value = state.token;
  const c = state.token ? claims(state.token) : null;
  state.user = c && c.sub !== undefined ? String(c.sub) : "";
  $("whoami").textContent = state.user || "nobody";
  const expires = c && c.exp ? new Date(c.exp * 1000).toLocaleString() : "";
  $("token-status").textContent =
    state.token && !c ? "(not a JWT)" : expires ? `(until ${expires}${c.role ? ", " + c.role : ""})` : "";
  sessionStorage.setItem("roomcast-token", state.token);
  if (state.socket) disconnect();
  selectRoom(null);
  if (state.token) loadRooms().catch((e) => showError(e.message));
  else $("rooms").replaceChildren();
}

async function mint() {
  const user = $("mint-user").value.trim();
  const reply = await api("POST", "/console/token", { user });
  setToken(reply.token);
}

// --- rooms and messages ------------------------------------------------------------------

async function loadRooms() {
  const { rooms } = await api("GET", "/api/v1/rooms");
  $("rooms").replaceChildren(
    ...rooms.map((room) => {
      const button = el("button", {
        type: "button",
        textContent: `#${room.id} ${room.name || "(unnamed)"} · ${room.kind}`,
      });
      button.dataset.room = room.id;
      button.addEventListener("click", guarded(() => selectRoom(room.id)));
      const item = el("li", {}, button);
      if (state.room === room.id) item.className = "chosen";
      return item;
    }),
  );
}

async function selectRoom(id) {
  state.room = id;
  for (const input of ["message-text", "post", "member-user", "add-member"]) {
    $(input).disabled = id === null;
  }
  for (const item of $("rooms").children) {
    item.className = item.firstChild.dataset.room === String(id) ? "chosen" : "";
  }
  if (id === null) {
    $("room-title").textContent = "No room chosen";
    $("room-members-list").textContent = "";
    $("messages").replaceChildren();
    return;
  }
  await loadRoom();
}

async function loadRoom() {
  const id = state.room;
  if (id === null) return;
  const [{ room }, page] = await Promise.all([
    api("GET", `/api/v1/rooms/${id}`),
    // The newest 50: `before` past any id.
    api("GET", `/api/v1/rooms/${id}/messages?before=9007199254740991&limit=50`),
  ]);
  if (state.room !== id) return;
  $("room-title").textContent = `#${room.id} ${room.name || "(unnamed)"}`;
  $("room-members-list").textContent =
    "members: " + room.members.map((m) => (m.role === "member" ? m.user : `${m.user} (${m.role})`)).join(", ");
  $("messages").replaceChildren(...page.messages.map(messageItem));
  $("messages").scrollTop = $("messages").scrollHeight;
}

function messageItem(message) {
  const item = el(
    "li",
    { className: "message" },
    el("span", { className: "author", textContent: message.author }),
    el("span", { className: "text", textContent: message.text }),
    message.edited_ms > message.created_ms ? el("span", { className: "note", textContent: " (edited)" }) : "",
  );
  item.dataset.id = message.id;
  if (message.author === state.user) {
    const edit = el("button", { type: "button", className: "small edit", textContent: "edit" });
    edit.addEventListener("click", () => editInPlace(item, message));
    const remove = el("button", { type: "button", className: "small delete", textContent: "delete" });
    remove.addEventListener(
      "click",
      guarded(async () => {
        await api("DELETE", `/api/v1/messages/${message.id}`);
        await loadRoom();
      }),
    );
    item.append(el("span", { className: "actions" }, edit, remove));
  }
  return item;
}

function editInPlace(item, message) {
  const input = el("input", { className: "edit-text", value: message.text });
  const save = el("button", { type: "submit", className: "small", textContent: "save" });
  const cancel = el("button", { type: "button", className: "small", textContent: "cancel" });
  const form = el("form", { className: "edit-form" }, input, save, cancel);
  form.addEventListener(
    "submit",
    guarded(async () => {
      await api("PATCH", `/api/v1/messages/${message.id}`, { text: input.value });
      await loadRoom();
    }),
  );
  cancel.addEventListener("click", guarded(loadRoom));
  item.replaceChildren(el("span", { className: "author", textContent: message.author }), form);
  input.focus();
}

async function createRoom() {
  const members = $("room-members")
    .value.split(",")
    .map((m) => m.trim())
    .filter(Boolean);
  const { room } = await api("POST", "/api/v1/rooms", { name: $("room-name").value, members });
  $("room-name").value = "";
  $("room-members").value = "";
  await loadRooms();
  await selectRoom(room.id);
}

async function post() {
  const text = $("message-text").value;
  if (!text) return;
  await api("POST", `/api/v1/rooms/${state.room}/messages`, { text });
  $("message-text").value = "";
  await loadRoom();
}

async function addMember() {
  const user = $("member-user").value.trim();
  await api("PUT", `/api/v1/rooms/${state.room}/members/${encodeURIComponent(user)}`, {});
  $("member-user").value = "";
  await loadRoom();
}

// Something happened on the socket: refresh the lists (once per burst of events).
function scheduleRefresh() {
  clearTimeout(state.refresh);
  state.refresh = setTimeout(() => {
    loadRooms().catch(() => {});
    loadRoom().catch(() => {});
  }, 100);
}

// --- live events ---------------------------------------------------------------------------

// Browsers cannot set Authorization on a WebSocket: each dialect's other way in.
const DIALECTS = {
  virola: { path: (t) => `/api/v1/events?access_token=${encodeURIComponent(t)}` },
  osu: {
    path: (t) => `/notifications?access_token=${encodeURIComponent(t)}`,
    open: (ws) => send(ws, JSON.stringify({ event: "chat.start" })),
  },
  big: { path: (t) => `/websocket?access_token=${encodeURIComponent(t)}` },
  rechat: {
    path: () => "/socket.io/?EIO=4&transport=websocket",
    // Engine.IO 4 by hand: open → connect the namespace ("40") → Authenticate with an ack.
    frame: (ws, data) => {
      if (data === "2") send(ws, "3");
      else if (data.startsWith("0")) send(ws, "40");
      else if (data.startsWith("40")) send(ws, "421" + JSON.stringify(["Authenticate", state.token]));
    },
  },
};

function logLine(direction, text) {
  const log = $("log");
  const item = el(
    "li",
    { className: `event ${direction}` },
    el("time", { textContent: new Date().toLocaleTimeString() }),
    el("span", { className: "dir", textContent: { in: "←", out: "→", info: "·" }[direction] }),
    el("code", { textContent: text }),
  );
  log.append(item);
  while (log.children.length > 500) log.firstChild.remove();
  log.scrollTop = log.scrollHeight;
}

function send(ws, text) {
  ws.send(text);
  logLine("out", text);
}

function connect() {
  if (!state.token) throw new Error("no token: mint or paste one first");
  const name = $("dialect").value;
  const dialect = DIALECTS[name];
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const url = `${scheme}//${location.host}${dialect.path(state.token)}`;
  if (dialect.note) logLine("info", dialect.note);
  logLine("info", `connecting to ${url.replace(/access_token=[^&]+/, "access_token=…")}`);
  const ws = new WebSocket(url);
  state.socket = ws;
  $("socket-status").textContent = "connecting";
  $("connect").textContent = "Disconnect";
  ws.addEventListener("open", () => {
    $("socket-status").textContent = `open (${name})`;
    if (dialect.open) dialect.open(ws);
  });
  ws.addEventListener("message", (event) => {
    const data = typeof event.data === "string" ? event.data : "(binary frame)";
    logLine("in", data);
    if (dialect.frame) dialect.frame(ws, data);
    if (data !== "2" && data !== "3") scheduleRefresh();
  });
  ws.addEventListener("close", (event) => {
    logLine("info", `closed: code ${event.code}${event.reason ? " " + event.reason : ""}`);
    if (state.socket === ws) {
      state.socket = null;
      $("socket-status").textContent = "closed";
      $("connect").textContent = "Connect";
    }
  });
}

function disconnect() {
  const ws = state.socket;
  state.socket = null;
  $("socket-status").textContent = "closed";
  $("connect").textContent = "Connect";
  if (ws) ws.close(1000);
}

// --- health and metrics --------------------------------------------------------------------

async function loadHealth() {
  const health = await fetch("/healthz").then((r) => r.json());
  $("health").textContent = JSON.stringify(health, null, 2);
  const text = await fetch("/metrics").then((r) => r.text());
  // `roomcast_name{shard="0"} 12` rows become a table, one column per shard.
  const perShard = new Map();
  const others = [];
  let shards = 0;
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^roomcast_(\w+)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!match) continue;
    const [, name, labels, value] = match;
    const shard = /^shard="(\d+)"$/.exec(labels || "");
    if (shard) {
      const index = Number(shard[1]);
      shards = Math.max(shards, index + 1);
      if (!perShard.has(name)) perShard.set(name, []);
      perShard.get(name)[index] = value;
    } else {
      others.push([name + (labels ? `{${labels}}` : ""), value]);
    }
  }
  const head = el("tr", {}, el("th", { textContent: "counter" }));
  for (let s = 0; s < shards; s++) head.append(el("th", { textContent: `shard ${s}` }));
  $("metrics").tHead.replaceChildren(head);
  $("metrics").tBodies[0].replaceChildren(
    ...Array.from(perShard, ([name, values]) => {
      const row = el("tr", {}, el("td", { textContent: name }));
      for (let s = 0; s < shards; s++) row.append(el("td", { className: "num", textContent: values[s] ?? "" }));
      return row;
    }),
  );
  $("other-metrics").tBodies[0].replaceChildren(
    ...others.map(([name, value]) =>
      el("tr", {}, el("td", { textContent: name }), el("td", { className: "num", textContent: value })),
    ),
  );
}

function showTab(health) {
  $("chat-view").hidden = health;
  $("health-view").hidden = !health;
  $("tab-chat").classList.toggle("active", !health);
  $("tab-health").classList.toggle("active", health);
  clearInterval(state.healthTimer);
  if (health) {
    loadHealth().catch((e) => ($("health").textContent = e.message));
    state.healthTimer = setInterval(() => {
      if ($("auto-refresh").checked) loadHealth().catch(() => {});
    }, 2000);
  }
}

// --- start -----------------------------------------------------------------------------------

async function start() {
  $("mint-form").addEventListener("submit", guarded(mint));
  $("token").addEventListener("change", () => setToken($("token").value));
  $("refresh-rooms").addEventListener("click", guarded(loadRooms));
  $("create-room").addEventListener("submit", guarded(createRoom));
  $("post-form").addEventListener("submit", guarded(post));
  $("member-form").addEventListener("submit", guarded(addMember));
  $("connect").addEventListener("click", guarded(() => (state.socket ? disconnect() : connect())));
  $("clear-log").addEventListener("click", () => $("log").replaceChildren());
  $("tab-chat").addEventListener("click", () => showTab(false));
  $("tab-health").addEventListener("click", () => showTab(true));
  $("refresh-health").addEventListener("click", guarded(loadHealth));

  const index = await fetch("/", { headers: { Accept: "application/json" } }).then((r) => r.json());
  $("version").textContent = index.version;
  const mints = Boolean(index.console && index.console.mint);
  $("mint-form").hidden = !mints;
  $("paste-hint").hidden = mints;
  document.body.dataset.ready = "true";
  const saved = sessionStorage.getItem("roomcast-token");
  if (saved) setToken(saved);
}

start().catch((e) => showError(e.message));
