// Peer server for the roomcast benchmarks: Node.js + ws 8, "plain" broadcast protocol.
//
// Connect to ws://HOST:PORT/ws?room=NAME; every text frame a client sends is relayed to every
// member of the room, sender included. Written the way a typical ws user would: a Map of
// room -> Set of sockets and a loop over the set for each message.
//
// Usage: node server.js [--listen 127.0.0.1:9003]
'use strict';

const http = require('http');
const { WebSocketServer, WebSocket } = require('ws');

let listen = '127.0.0.1:9003';
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === '--listen') listen = process.argv[++i];
}
const sep = listen.lastIndexOf(':');
const host = listen.slice(0, sep);
const port = Number(listen.slice(sep + 1));

const rooms = new Map();

const server = http.createServer((req, res) => {
  res.writeHead(404);
  res.end();
});
const wss = new WebSocketServer({ server, path: '/ws' });

wss.on('connection', (ws, req) => {
  const url = new URL(req.url, 'http://localhost');
  const name = url.searchParams.get('room') || 'default';
  let room = rooms.get(name);
  if (!room) {
    room = new Set();
    rooms.set(name, room);
  }
  room.add(ws);

  ws.on('message', (data, isBinary) => {
    if (isBinary) return;
    for (const peer of room) {
      if (peer.readyState === WebSocket.OPEN) peer.send(data, { binary: false });
    }
  });
  ws.on('close', () => {
    room.delete(ws);
    if (room.size === 0 && rooms.get(name) === room) rooms.delete(name);
  });
  ws.on('error', () => {});
});

server.listen({ host, port, backlog: 4096 }, () => {
  console.log(`node-ws peer listening on ${host}:${port}`);
});
