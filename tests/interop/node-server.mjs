// A Node.js socket.io server on @socket.io/redis-adapter, as our users run it today. The interop
// tests start it next to chat-server nodes on the same Redis and drive its cluster API through a
// small HTTP control interface (POST /ctl/<operation>, JSON in and out).
//
// Environment: REDIS_URL, REDIS_KEY (the adapter's `key`), SPECIFIC_RESPONSE_CHANNEL ("true" sets
// `publishOnSpecificResponseChannel`), NODE_NAME, PORT (0 picks a free one). With
// SUBSCRIPTION_MODE set, the sharded adapter (`createShardedAdapter`, `channelPrefix` REDIS_KEY) in
// that mode; with REDIS_CLUSTER_NODES (comma-separated redis:// URLs), a Redis Cluster client.
// Prints "listening <port>" once the adapter is subscribed.
import { createServer } from "node:http";
import { Server } from "socket.io";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { createClient, createCluster } from "redis";

const nodeName = process.env.NODE_NAME ?? "node-js";
const key = process.env.REDIS_KEY ?? "socket.io";
const subscriptionMode = process.env.SUBSCRIPTION_MODE;
const clusterNodes = process.env.REDIS_CLUSTER_NODES?.split(",");
const pubClient = clusterNodes
  ? createCluster({ rootNodes: clusterNodes.map((url) => ({ url })) })
  : createClient({ url: process.env.REDIS_URL });
const subClient = pubClient.duplicate();
for (const client of [pubClient, subClient]) {
  client.on("error", (err) => console.error(`[${nodeName}] redis: ${err.message}`));
}
await Promise.all([pubClient.connect(), subClient.connect()]);

const httpServer = createServer((req, res) => {
  if (req.method === "POST" && req.url.startsWith("/ctl/")) {
    control(req.url.slice("/ctl/".length), req, res);
  } else if (!req.url.startsWith("/socket.io/")) {
    res.writeHead(404).end();
  }
});
const io = new Server(httpServer, {
  adapter: subscriptionMode
    ? createShardedAdapter(pubClient, subClient, { channelPrefix: key, subscriptionMode })
    : createAdapter(pubClient, subClient, {
        key,
        requestsTimeout: 3000,
        publishOnSpecificResponseChannel: process.env.SPECIFIC_RESPONSE_CHANNEL === "true",
      }),
});

// Server-side events received from other nodes, for the tests to read back.
const serverEvents = [];

// A socket states who it is and which rooms it starts in through its auth payload; every socket
// answers the server's ack requests with where it lives.
function onConnection(socket) {
  const { userId, name, rooms = [] } = socket.handshake.auth ?? {};
  socket.data = { userId, name, runtime: "node" };
  socket.join(rooms);
}

function onServerEvent(nsp) {
  return (event, ...args) => {
    const ack = typeof args.at(-1) === "function" ? args.pop() : undefined;
    serverEvents.push({ nsp: nsp.name, event, args });
    ack?.({ from: nodeName, event, args });
  };
}

for (const name of ["/", "/team"]) {
  const nsp = io.of(name);
  nsp.on("connection", onConnection);
  for (const event of ["hello", "ask"]) {
    nsp.on(event, (...args) => onServerEvent(nsp)(event, ...args));
  }
}

// `{ nsp, rooms, except }` selects sockets as Node's BroadcastOperator does.
function select({ nsp = "/", rooms = [], except = [] }) {
  return io.of(nsp).in(rooms).except(except);
}

const operations = {
  // Broadcast, optionally collecting acks (`ackTimeoutMs`).
  async emit(body) {
    const selection = select(body);
    if (body.ackTimeoutMs === undefined) {
      selection.emit(body.event, ...body.args);
      return { ok: true };
    }
    const acks = await selection.timeout(body.ackTimeoutMs).emitWithAck(body.event, ...body.args);
    return { acks };
  },
  async fetchSockets(body) {
    const sockets = await select(body).fetchSockets();
    return sockets.map((s) => ({ id: s.id, rooms: [...s.rooms], data: s.data, handshake: s.handshake }));
  },
  async socketsJoin(body) {
    select(body).socketsJoin(body.join);
    return { ok: true };
  },
  async socketsLeave(body) {
    select(body).socketsLeave(body.leave);
    return { ok: true };
  },
  async disconnectSockets(body) {
    select(body).disconnectSockets(body.close === true);
    return { ok: true };
  },
  // With `ack`, waits for every other node's acknowledgement (up to the adapter's requestsTimeout).
  async serverSideEmit({ nsp = "/", event, args, ack }) {
    if (!ack) {
      io.of(nsp).serverSideEmit(event, ...args);
      return { ok: true };
    }
    return { acks: await io.of(nsp).serverSideEmitWithAck(event, ...args) };
  },
  async allRooms({ nsp = "/" }) {
    return [...(await io.of(nsp).adapter.allRooms())];
  },
  async serverCount({ nsp = "/" }) {
    return await io.of(nsp).adapter.serverCount();
  },
  async serverEvents() {
    return serverEvents;
  },
};

function control(operation, req, res) {
  let body = "";
  req.on("data", (chunk) => (body += chunk));
  req.on("end", async () => {
    const reply = (status, value) =>
      res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(value));
    const run = operations[operation];
    if (!run) {
      return reply(404, { error: `unknown operation ${operation}` });
    }
    const started = performance.now();
    try {
      const result = await run(JSON.parse(body || "{}"));
      reply(200, { result, elapsedMs: performance.now() - started });
    } catch (err) {
      reply(500, { error: err.message, elapsedMs: performance.now() - started });
    }
  });
}

httpServer.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(`listening ${httpServer.address().port}`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => io.close(() => process.exit(0)));
}
