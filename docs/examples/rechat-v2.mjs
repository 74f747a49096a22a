// Rechat (Socket.IO at /socket.io/) with socket.io-client 2 (Engine.IO 3, as Rechat's Socket.IO 1.x server).
//   npm install socket.io-client@2
//   ROOMCAST_URL=http://127.0.0.1:8080 ROOMCAST_TOKEN=<jwt> node rechat-v2.mjs
import io from "socket.io-client";

const socket = io(process.env.ROOMCAST_URL ?? "http://127.0.0.1:8080"); // polling, then upgrades

// No credentials at the handshake: authenticate in band, again after every reconnect.
socket.on("connect", () => {
  socket.emit("Authenticate", process.env.ROOMCAST_TOKEN, (err, user) => {
    if (err) {
      console.log("refused", err); // {http: 401, message, code: "UnauthorizedAccess"}
      return socket.close();
    }
    console.log(`connected as ${user.id}`);
  });
});
socket.on("Message.Sent", (room, message) => {
  console.log(`Message.Sent room=${room.id} id=${message.id} from=${message.author.id}: ${message.comment}`);
  socket.close(); // this example stops at the first message; a client keeps listening
});
socket.on("disconnect", (reason) => console.log(`disconnected: ${reason}`));
