// Which messages of the current room to show, each once and in order. Live messages can arrive
// before the `join` ack that carries the history (the server puts the socket in the room first),
// and a rejoin after a reconnect brings history that overlaps what is already on screen.

/** @typedef {{ id: string, room: string, from: { id: string, name: string }, text: string, ts: number }} Message */

export class Timeline {
  constructor() {
    /** @type {Set<string>} messages already shown */
    this.shown = new Set();
    /** @type {Message[] | null} live messages held while a join is pending */
    this.held = null;
  }

  /** A different room: nothing of the old one counts. */
  reset() {
    this.shown.clear();
    this.held = null;
  }

  /** A join was sent: hold live messages until its history is in. */
  joining() {
    this.held = [];
  }

  /**
   * A message from the server (event or ack).
   * @param {Message} message
   * @returns {Message[]} what to show now
   */
  live(message) {
    if (this.held) {
      this.held.push(message);
      return [];
    }
    return this.fresh([message]);
  }

  /**
   * The join ack's history arrived: it, then whatever came meanwhile.
   * @param {Message[]} history oldest first
   * @returns {Message[]} what to show now
   */
  joined(history) {
    const held = this.held ?? [];
    this.held = null;
    return this.fresh([...history, ...held]);
  }

  /** A join failed: show what was held rather than lose it. */
  failed() {
    return this.joined([]);
  }

  /** @param {Message[]} messages */
  fresh(messages) {
    return messages.filter((m) => {
      // Ids restart when a single node without Redis restarts; the time tells those apart.
      const key = `${m.id}@${m.ts}`;
      if (this.shown.has(key)) return false;
      this.shown.add(key);
      return true;
    });
  }
}
