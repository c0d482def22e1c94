// An idle flood past MAX_CONNECTIONS, against a node you started yourself:
//   MAX_CONNECTIONS=5000 PORT=38123 target/release/chat-server &
//   node bench/flood.mjs 38123 5500
// Opens that many idle WebSocket clients at once (socket.io-client of web/, no reconnection),
// prints how many were admitted and refused and what /readyz says while full, then closes a
// quarter of them and reads /readyz again (below the low-water mark it is ready). Read the node's
// RSS while it waits (the line "full: measure now").
import { io } from "../web/node_modules/socket.io-client/build/esm/index.js";

const [port, total] = [Number(process.argv[2]), Number(process.argv[3])];
const readyz = async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let admitted = 0;
let refused = 0;
const sockets = Array.from({ length: total }, (_, i) =>
  io(`http://127.0.0.1:${port}`, {
    transports: ["websocket"],
    reconnection: false,
    auth: { userId: `flood-${i}` },
  }),
);
await Promise.all(
  sockets.map(
    (socket) =>
      new Promise((resolve) => {
        socket.on("connect", () => resolve(admitted++));
        socket.on("connect_error", () => resolve(refused++));
      }),
  ),
);
console.log(`admitted ${admitted}, refused ${refused}, /readyz ${await readyz()}`);
console.log("full: measure now");
await sleep(5000);
const leaving = Math.ceil(admitted / 4);
sockets.filter((s) => s.connected).slice(0, leaving).forEach((s) => s.close());
await sleep(1500);
console.log(`${leaving} left: /readyz ${await readyz()}`);
sockets.forEach((s) => s.close());
process.exit(0);
