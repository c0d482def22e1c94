// Who is online in the room on screen: the full list comes with the join ack, and `presence`
// events carry only what changed (shared/PROTOCOL.md), so the page keeps the list itself.

/** @typedef {{ id: string, name: string }} Member */

export class Roster {
  /** @type {Map<string, Member>} */
  #members = new Map();

  /** @param {Member[]} members the list of a join ack */
  reset(members) {
    this.#members = new Map(members.map((m) => [m.id, m]));
    return this.members();
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
