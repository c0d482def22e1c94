// Which messages of the current room to show, each once and in `seq` order, and where the page
// stands: the `{ epoch, seq }` of the last message it holds with none missing before it, which a
// rejoin sends as `since` (shared/PROTOCOL.md, "Messages, order and recovery").
//
// Appending what comes is not enough, for three reasons:
// - live messages can arrive before the `join` ack that carries the history (the server puts the
//   socket in the room before it reads the history), so they are held until the ack is in;
// - live delivery is at most once, so a seq can be skipped: a message after a gap waits, and the
//   page rejoins with `since` to get what it missed;
// - the ack of one's own message can come before live messages with lower seqs (the live stream is
//   ordered, acks are not part of it), so an ack beyond the end waits too, without asking for a
//   rejoin: the live stream brings what lies between.
// The timeline only decides; main.js puts its decisions on screen.

/**
 * @typedef {{
 *   id: string, room: string, seq: number, epoch: string,
 *   from: { id: string, name: string }, text: string, ts: number, clientId?: string,
 * }} Message
 * @typedef {{ epoch: string, seq: number }} Position
 * @typedef {{
 *   reset: boolean,
 *   lost: boolean,
 *   show: Message[],
 *   gap: boolean,
 * }} Change what to do on screen: `reset` clears the room's messages first, `lost` says messages
 *   could not be recovered (always with `reset`), `show` is appended in order, and `gap` asks for a
 *   rejoin with `since` because something was missed
 * @typedef {{ message: Message, live: boolean }} Arrival a message and whether it came as a live
 *   event (only those prove a gap)
 */

/** @returns {Change} */
const nothing = () => ({ reset: false, lost: false, show: [], gap: false });

export class Timeline {
  /** @type {Position | null} the last message held with none missing before it */
  #at = null;
  /** @type {Map<number, Arrival>} messages of the current epoch beyond a gap, by seq */
  #ahead = new Map();
  /** @type {Arrival[] | null} what came while a join is pending */
  #held = null;
  /** whether a gap was reported since the last join was sent: one rejoin is enough */
  #gapReported = false;

  /** A different room: nothing of the old one counts. */
  reset() {
    this.#at = null;
    this.#ahead.clear();
    this.#held = null;
    this.#gapReported = false;
  }

  /** @returns {Position | null} what a (re)join sends as `since`, or null when nothing is held */
  position() {
    return this.#at && { ...this.#at };
  }

  /**
   * Whether the page holds this message (or a later one of its epoch), i.e. has shown it.
   * @param {Message} message
   */
  holds(message) {
    return this.#at !== null && this.#at.epoch === message.epoch && this.#at.seq >= message.seq;
  }

  /** A join was sent: hold what comes until its history is in. */
  joining() {
    this.#held = [];
    this.#gapReported = false;
  }

  /**
   * A `message` event.
   * @param {Message} message
   * @returns {Change}
   */
  live(message) {
    return this.#arrive({ message, live: true });
  }

  /**
   * The message of an ok `message` ack (this page's own).
   * @param {Message} message
   * @returns {Change}
   */
  acked(message) {
    return this.#arrive({ message, live: false });
  }

  /**
   * The join ack arrived: its history, then whatever came meanwhile.
   * @param {Message[]} history oldest first
   * @param {boolean} [recovered] the ack's `recovered`, absent when the join had no `since`
   * @param {string} [roomEpoch] the ack's `epoch`: the room's epoch now
   * @returns {Change}
   */
  joined(history, recovered, roomEpoch) {
    // Recovered across a failover, the messages held keep their seqs in the room's new epoch.
    if (recovered === true && this.#at !== null && roomEpoch !== undefined) {
      this.#at.epoch = roomEpoch;
    }
    const since = this.#at;
    const waiting = [...this.#ahead.values(), ...(this.#held ?? [])];
    this.#held = null;
    this.#ahead.clear();
    const first = history[0];
    const continues =
      since !== null &&
      recovered === true &&
      (first === undefined || (first.epoch === since.epoch && first.seq <= since.seq + 1));
    // Without `since` nothing is on screen yet, so the history is simply the start. With `since`,
    // a history that does not continue what is held means messages in between are gone: the room
    // starts over from the history, and the page says so.
    const lost = since !== null && !continues;
    if (lost) this.#at = null;
    const change = nothing();
    change.reset = lost;
    change.lost = lost;
    for (const message of history) this.#take({ message, live: false }, change);
    // What came before this ack but belongs to another epoch predates the history just read.
    const epoch = this.#at?.epoch;
    for (const arrival of waiting.sort((a, b) => a.message.seq - b.message.seq)) {
      if (epoch === undefined || arrival.message.epoch === epoch) this.#take(arrival, change);
    }
    return change;
  }

  /**
   * A join failed: what was held is taken as it came rather than lost.
   * @returns {Change}
   */
  failed() {
    const held = this.#held ?? [];
    this.#held = null;
    const change = nothing();
    for (const arrival of held) this.#take(arrival, change);
    return change;
  }

  /** @param {Arrival} arrival @returns {Change} */
  #arrive(arrival) {
    if (this.#held) {
      this.#held.push(arrival);
      return nothing();
    }
    return this.#take(arrival, nothing());
  }

  /**
   * Adds one message to `change`: shown if it is the next one, kept if it is beyond a gap,
   * dropped if it is held already.
   * @param {Arrival} arrival
   * @param {Change} change
   */
  #take({ message, live }, change) {
    const at = this.#at;
    if (at === null) {
      // Nothing held: the first message is the start (an empty history leaves no position).
      this.#at = { epoch: message.epoch, seq: message.seq };
      change.show.push(message);
    } else if (message.epoch !== at.epoch) {
      // The room's sequence was lost and started over: only a rejoin tells what is left.
      this.#reportGap(change);
      return change;
    } else if (message.seq <= at.seq || this.#ahead.has(message.seq)) {
      return change;
    } else if (message.seq === at.seq + 1) {
      at.seq = message.seq;
      change.show.push(message);
    } else {
      this.#ahead.set(message.seq, { message, live });
      if (live) this.#reportGap(change);
      return change;
    }
    this.#drain(change);
    return change;
  }

  /** Shows what waited beyond a gap that is now filled. @param {Change} change */
  #drain(change) {
    const at = /** @type {Position} */ (this.#at);
    for (;;) {
      const next = this.#ahead.get(at.seq + 1);
      if (next === undefined) break;
      this.#ahead.delete(at.seq + 1);
      at.seq += 1;
      change.show.push(next.message);
    }
    // A live message still waiting after the history of a join means another gap since.
    for (const arrival of this.#ahead.values()) {
      if (arrival.live) this.#reportGap(change);
    }
  }

  /** @param {Change} change */
  #reportGap(change) {
    if (this.#gapReported) return;
    this.#gapReported = true;
    change.gap = true;
  }
}
