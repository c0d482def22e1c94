// The Socket.IO connection to the node that served this page: its state, and the chat requests
// of shared/PROTOCOL.md as promises of their acks.

import { io } from "socket.io-client";

/**
 * How long a request waits for its ack before it counts as failed. A request cut by a lost
 * connection fails at once (socket.io-client rejects it on disconnect), with the same `timeout`.
 */
const ACK_TIMEOUT_MS = 10_000;

/** How long the page waits before it reconnects when the server closed its socket. */
const RESYNC_DELAY_MS = 500;

/**
 * @typedef {"connecting" | "online" | "reconnecting" | "offline"} State
 * @typedef {{ ok: true, [field: string]: any } | { ok: false, error: import("./errors.js").ChatError }} Ack
 * @typedef {{
 *   state(state: State, detail?: string): void,
 *   connected(): void,
 *   message(message: import("./timeline.js").Message): void,
 *   presence(update: { room: string, count: number, joined?: { id: string, name: string }[], left?: { id: string, name: string }[] }): void,
 *   notice(notice: { room: string, kind: "join" | "leave", user: { id: string, name: string }, ts: number, id?: string }): void,
 * }} Handlers
 */

/**
 * Connects as `name`; socket.io-client reconnects by itself after a lost connection, and
 * `handlers.connected` runs after every (re)connection, since the server forgets the rooms of a
 * socket that is gone.
 * @param {string} name
 * @param {Handlers} handlers
 */
export function connect(name, handlers) {
  const socket = io({ auth: { name } });
  handlers.state("connecting");

  socket.on("connect", () => {
    handlers.state("online");
    handlers.connected();
  });
  socket.on("disconnect", (reason) => {
    // `socket.active` is false when the server closed this socket itself (reason `io server
    // disconnect`), and socket.io-client then waits for the application. A node does that when it
    // may have missed broadcasts (it lost messages, or its Redis subscriber reconnected) or when
    // this page could not keep up: either way the way back is to reconnect and rejoin, which
    // `connected` does, so the page comes back after a short pause.
    handlers.state("reconnecting", socket.active ? undefined : `the server asked to resync (${reason})`);
    if (!socket.active) setTimeout(() => socket.connect(), RESYNC_DELAY_MS);
  });
  socket.on("connect_error", (err) => {
    // A refused handshake (bad name, unauthorized) is final; a network error is retried.
    if (!socket.active) handlers.state("offline", err.message);
  });
  socket.io.on("reconnect_attempt", () => handlers.state("reconnecting"));

  socket.on("message", handlers.message);
  socket.on("presence", handlers.presence);
  socket.on("notice", handlers.notice);

  /**
   * @param {string} event
   * @param {object} payload
   * @returns {Promise<Ack>}
   */
  async function request(event, payload) {
    try {
      return await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(event, payload);
    } catch {
      return { ok: false, error: { code: "timeout", message: `${event} was not answered` } };
    }
  }

  return {
    /**
     * @param {string} room
     * @param {string | null} chatterId
     * @param {import("./timeline.js").Position | null} since the last message held, if any
     */
    join: (room, chatterId, since) =>
      request("join", { room, ...(chatterId ? { chatterId } : {}), ...(since ? { since } : {}) }),
    /**
     * A page of the room's history on from `after` (what a rejoin missed beyond its ack).
     * @param {string} room
     * @param {import("./timeline.js").Position} after
     */
    history: (room, after) => request("history", { room, after }),
    /**
     * A page of the room's history back from the message before `before` (scrollback).
     * @param {string} room
     * @param {number} before
     * @param {number} limit
     */
    older: (room, before, limit) => request("history", { room, before, limit }),
    /** @param {string} room */
    leave: (room) => request("leave", { room }),
    /** @param {string} room @param {string} text @param {string} clientId the same on every retry */
    send: (room, text, clientId) => request("message", { room, text, clientId }),
    get online() {
      return socket.connected;
    },
  };
}
