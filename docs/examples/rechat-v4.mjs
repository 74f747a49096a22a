// Rechat (Socket.IO at /socket.io/) with socket.io-client 4 (Engine.IO 4).
//   npm install socket.io-client@4
//   ROOMCAST_URL=http://127.0.0.1:8080 ROOMCAST_TOKEN=<jwt> node rechat-v4.mjs
import { io } from "socket.io-client";

// v4 may carry the token in the CONNECT packet (sent again on every reconnect); emitting
// "Authenticate" after "connect", as with v2, works too.
const socket = io(process.env.ROOMCAST_URL ?? "http://127.0.0.1:8080", {
  auth: { token: process.env.ROOMCAST_TOKEN },
});
socket.on("connect", () => console.log("connected"));
socket.on("connect_error", (err) => console.log("refused", err.message, err.data)); // data: {http, message, code}
socket.on("Users.Online", (ids) => console.log(`online: ${ids.join(", ")}`)); // after authentication
socket.on("Message.Sent", (room, message) => {
  console.log(`Message.Sent room=${room.id} id=${message.id} from=${message.author.id}: ${message.comment}`);
  socket.close(); // this example stops at the first message; a client keeps listening
});
socket.on("disconnect", (reason) => console.log(`disconnected: ${reason}`));
