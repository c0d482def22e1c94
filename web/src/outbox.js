// The messages typed in the room on screen that the server has not confirmed yet, in the order they
// were typed. Each gets a `clientId` once, and every retry sends it again: the server stores a
// message once per clientId and answers a retry with the message it stored (shared/PROTOCOL.md),
// so resending after a timeout or a reconnect can never post a message twice, even when the first
// attempt was stored and only its ack got lost with a dying node.
//
// One message is in flight at a time, so a retry cannot overtake the next message: the room gets
// them in the order they were typed.

/** @typedef {{ clientId: string, text: string }} Pending */

/**
 * Error codes after which the same request can succeed later (shared/PROTOCOL.md lists the
 * server's; `timeout` is the client's own, also given when the connection dropped mid-request).
 * Any other refusal (too_long, bad_request, rate_limited, …) would be refused again.
 */
const RETRYABLE = new Set(["timeout", "not_in_room", "internal"]);

/** @param {string} code an error ack's code */
export function retryable(code) {
  return RETRYABLE.has(code);
}

/**
 * A new clientId: a UUID where the browser offers `crypto.randomUUID`, which it does only in
 * secure contexts (https, localhost), otherwise 128 random bits in hex.
 * @param {Pick<Crypto, "getRandomValues"> & { randomUUID?: () => string } | undefined} [crypto]
 * @returns {string}
 */
export function newClientId(crypto = globalThis.crypto) {
  if (typeof crypto?.randomUUID === "function") return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  if (typeof crypto?.getRandomValues === "function") {
    crypto.getRandomValues(bytes);
  } else {
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  }
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

export class Outbox {
  /** @type {Pending[]} oldest first */
  #queue = [];
  /** @type {string | null} the clientId of the request in flight */
  #inFlight = null;

  /** @param {() => string} [makeId] */
  constructor(makeId = newClientId) {
    this.makeId = makeId;
  }

  /**
   * A message was typed.
   * @param {string} text
   * @returns {Pending}
   */
  add(text) {
    const pending = { clientId: this.makeId(), text };
    this.#queue.push(pending);
    return pending;
  }

  /**
   * The message to send now: the oldest unconfirmed one, or null while a request is in flight or
   * nothing waits. It counts as in flight until `answered`.
   * @returns {Pending | null}
   */
  next() {
    if (this.#inFlight !== null || this.#queue.length === 0) return null;
    this.#inFlight = this.#queue[0].clientId;
    return this.#queue[0];
  }

  /**
   * The request for `clientId` ended with `ack`.
   * @param {string} clientId
   * @param {{ ok: boolean, error?: { code: string } }} ack
   * @returns {"stored" | "retry" | "refused" | "gone"} what became of the message: `gone` when it
   *   was settled meanwhile (its stored message arrived first)
   */
  answered(clientId, ack) {
    if (this.#inFlight === clientId) this.#inFlight = null;
    if (!this.#queue.some((p) => p.clientId === clientId)) return "gone";
    if (!ack.ok && retryable(ack.error?.code ?? "")) return "retry";
    this.#remove(clientId);
    return ack.ok ? "stored" : "refused";
  }

  /**
   * The stored message for `clientId` arrived (live or in a join's history): nothing to resend.
   * @param {string} clientId
   * @returns {boolean} whether it was waiting here
   */
  settle(clientId) {
    return this.#remove(clientId);
  }

  /** @returns {Pending[]} what waits, oldest first */
  pending() {
    return [...this.#queue];
  }

  /** @param {string} clientId */
  #remove(clientId) {
    const index = this.#queue.findIndex((p) => p.clientId === clientId);
    if (index < 0) return false;
    this.#queue.splice(index, 1);
    return true;
  }
}
