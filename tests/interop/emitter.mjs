// Another service publishing to the cluster's sockets through @socket.io/redis-emitter, with no
// socket.io server of its own. Usage: node emitter.mjs '<order as JSON>'; REDIS_URL in the
// environment. An order is `{ key?, nsp?, rooms?, except?, op, ... }` where `op` is one of
// emit (`event`, `args`), socketsJoin (`join`), socketsLeave (`leave`), disconnectSockets
// (`close`), serverSideEmit (`event`, `args`).
import { Emitter } from "@socket.io/redis-emitter";
import { createClient } from "redis";

const order = JSON.parse(process.argv[2]);
const client = createClient({ url: process.env.REDIS_URL });
await client.connect();

const options = order.key === undefined ? undefined : { key: order.key };
const namespace = new Emitter(client, options).of(order.nsp ?? "/");
const selection = namespace.in(order.rooms ?? []).except(order.except ?? []);

switch (order.op) {
  case "emit":
    selection.emit(order.event, ...order.args);
    break;
  case "socketsJoin":
    selection.socketsJoin(order.join);
    break;
  case "socketsLeave":
    selection.socketsLeave(order.leave);
    break;
  case "disconnectSockets":
    selection.disconnectSockets(order.close === true);
    break;
  case "serverSideEmit":
    namespace.serverSideEmit(order.event, ...order.args);
    break;
  default:
    console.error(`unknown op ${order.op}`);
    process.exit(2);
}
// The emitter publishes without waiting; QUIT flushes the pending commands first.
await client.quit();
