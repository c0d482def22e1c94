// Who is online in the room on screen: the full list comes with the join ack, and `presence`
// events carry only what changed (shared/PROTOCOL.md), so the page keeps the list itself. A leave
// notice may come twice (the server sends it at least once), with the same id.

/** @typedef {{ id: string, name: string }} Member */

export class Roster {
  /** @type {Map<string, Member>} */
  #members = new Map();
  /** @type {Set<string>} ids of the notices shown since the join */
  #notices = new Set();

  /** @param {Member[]} members the list of a join ack */
  reset(members) {
    this.#members = new Map(members.map((m) => [m.id, m]));
    this.#notices.clear();
    return this.members();
  }

  /**
   * Whether a notice was shown already (only notices with an id can repeat).
   * @param {{ id?: string, user: Member }} notice
   */
  repeated(notice) {
    if (notice.id === undefined) return false;
    const key = `${notice.user.id}\n${notice.id}`;
    if (this.#notices.has(key)) return true;
    this.#notices.add(key);
    return false;
  }

  /** @param {{ joined?: Member[], left?: Member[] }} update a `presence` event */
  apply(update) {
    for (const member of update.left ?? []) this.#members.delete(member.id);
    for (const member of update.joined ?? []) this.#members.set(member.id, member);
    return this.members();
  }

  /** @returns {Member[]} */
  members() {
    return [...this.#members.values()];
  }
}
