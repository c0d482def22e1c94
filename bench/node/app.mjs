// The benchmark's tiny app on socket.io + @socket.io/redis-adapter: the same events as the Rust
// `bench-app` (bench/src/bin/bench-app), nothing more, so the two measure the adapters and not
// the applications.
//
// Environment: PORT, REDIS_URL, NODE_NAME, KEY (the adapter's `key`). Prints "listening <port>"
// once the adapter's Redis clients are connected.
//
// - handshake `auth: { rooms: [..], i: n }`: the socket joins those rooms (`{ i }` becomes its
//   data);
// - `m` with `{ r: room, ... }`: broadcast as `m` to the room, the sender included;
// - `count` (ack): how many sockets with data the namespace has on every node (`fetchSockets`);
// - `rooms` (ack): how many rooms the namespace has on every node (`allRooms`);
// - `stats` (ack): this node's drop counters (none are known here: `{}`).
import { createServer } from "node:http";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";

const nodeName = process.env.NODE_NAME ?? "node";
const pubClient = createClient({ url: process.env.REDIS_URL });
const subClient = pubClient.duplicate();
for (const client of [pubClient, subClient]) {
  client.on("error", (err) => console.error(`[${nodeName}] redis: ${err.message}`));
}
await Promise.all([pubClient.connect(), subClient.connect()]);

const httpServer = createServer();
const io = new Server(httpServer, {
  adapter: createAdapter(pubClient, subClient, { key: process.env.KEY ?? "socket.io" }),
});

io.on("connection", (socket) => {
  socket.data = { i: socket.handshake.auth?.i };
  const rooms = socket.handshake.auth?.rooms;
  if (Array.isArray(rooms)) {
    socket.join(rooms);
  }
  socket.on("m", (payload) => {
    if (typeof payload?.r === "string") {
      io.to(payload.r).emit("m", payload);
    }
  });
  socket.on("count", async (ack) => {
    if (typeof ack !== "function") return;
    try {
      const sockets = await io.fetchSockets();
      ack(sockets.filter((s) => typeof s.data === "object").length);
    } catch (err) {
      ack({ error: err.message });
    }
  });
  socket.on("rooms", async (ack) => {
    if (typeof ack !== "function") return;
    try {
      ack((await io.of("/").adapter.allRooms()).size);
    } catch (err) {
      ack({ error: err.message });
    }
  });
  socket.on("stats", (ack) => {
    if (typeof ack === "function") ack({});
  });
});

httpServer.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(`listening ${httpServer.address().port}`);
});
