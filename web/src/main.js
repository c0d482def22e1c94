// Wires the page together: name first, then the room of the URL, kept joined across reconnects.
// What the user sees of a room is each stored message once, in order (timeline.js), followed by
// their own messages still on their way (outbox.js), which are resent until the server has them.

import { connect } from "./connection.js";
import { loadChatterId, loadName, nameProblem, saveChatterId, saveName } from "./identity.js";
import { Outbox, retryable } from "./outbox.js";
import { Roster } from "./roster.js";
import { hashForRoom, roomFromHash, validRoom } from "./route.js";
import { createScrollback } from "./scrollback.js";
import { Timeline } from "./timeline.js";
import { createView } from "./view.js";

/**
 * How long an ack may be ahead of the live messages before the page takes it as a gap: the live
 * stream normally brings the messages in between within a few milliseconds.
 */
const ACK_AHEAD_MS = 3000;

/** How long to wait before resending after a failure that did not cost the connection. */
const RETRY_MS = 1000;

const view = createView(document);
const remembered = loadName();

if (remembered !== null && nameProblem(remembered) === null) {
  chat(remembered);
} else {
  view.askName((name) => {
    const problem = nameProblem(name);
    if (problem === null) {
      saveName(name);
      chat(name);
    }
    return problem;
  });
}

/** @param {string} name */
function chat(name) {
  const timeline = new Timeline();
  const roster = new Roster();
  let outbox = new Outbox();
  /** @type {string | null} the room on screen */
  let room = null;
  /** whether this connection has joined `room` */
  let joined = false;
  /**
   * Whether `room` was joined once since it came on screen: from then on the composer stays usable
   * while the connection is down, and what is typed waits as pending until the page is back.
   */
  let entered = false;
  // Joins and leaves go out one at a time, so a quick change of rooms cannot reach the server
  // out of order and leave this socket in the wrong room.
  let queue = Promise.resolve();
  /** @param {() => Promise<unknown>} task */
  const serial = (task) => {
    queue = queue.then(task).catch((err) => console.error(err));
  };
  const refreshComposer = () => view.setCanSend(room !== null && entered);
  /** @type {{ id: string, name: string }} */
  let me = { id: loadChatterId() ?? "", name };

  view.setMe(me);

  const connection = connect(name, {
    state(state, detail) {
      joined &&= state === "online";
      view.setState(state, detail);
      refreshComposer();
    },
    connected() {
      // The server forgot this socket's rooms; `since` brings what was missed while away.
      if (room !== null) serial(() => join(room));
    },
    message(message) {
      if (message.room === room) show(timeline.live(message));
    },
    presence(update) {
      if (update.room === room && joined) view.showOnline(roster.apply(update));
    },
    notice(notice) {
      if (notice.room === room && joined && !roster.repeated(notice)) view.addNotice(notice);
    },
  });

  const scrollback = createScrollback(view, connection.older);

  /**
   * Puts a timeline change on screen; a stored message of this page's settles its pending one.
   * @param {import("./timeline.js").Change} change
   */
  function show(change) {
    if (change.reset) {
      view.resetMessages(change.lost);
      scrollback.reset(room);
    }
    view.addMessages(change.show);
    scrollback.settle();
    for (const message of change.show) {
      if (message.clientId !== undefined && message.from.id === me.id) outbox.settle(message.clientId);
    }
    if (change.gap) resync();
  }

  /** Something was missed: rejoin with `since` (after a reconnect, `connected` does it). */
  function resync() {
    if (room !== null && connection.online) serial(() => join(room));
  }

  /** @param {string | null} target */
  async function join(target) {
    if (target === null || target !== room || !connection.online) return;
    timeline.joining();
    const ack = await connection.join(target, loadChatterId(), timeline.position());
    if (target !== room) return;
    if (!ack.ok) {
      // What was held is shown; a gap among it waits for the next join rather than asking for one
      // at once, which could repeat a refused join without end.
      show({ ...timeline.failed(), gap: false });
      // A join cut by a lost connection is sent again on reconnect: nothing to tell the user.
      if (!connection.online) return;
      view.showError(ack.error);
      if (retryable(ack.error.code)) setTimeout(resync, RETRY_MS);
      return;
    }
    saveChatterId(ack.chatter.id);
    me = ack.chatter;
    view.setMe(me);
    const history = await missedBeyond(target, ack);
    if (target !== room) return;
    show(timeline.joined(history, ack.recovered, ack.epoch));
    view.showOnline(roster.reset(ack.online));
    joined = true;
    entered = true;
    refreshComposer();
    pump();
  }

  /**
   * The join's history and, when what was missed did not fit the ack (`more`), the pages after it
   * (`history { after }`), fetched before the timeline takes any: live messages arriving
   * meanwhile wait in the timeline and are merged by seq. A page that fails leaves the rest to
   * the timeline's gap detection, which rejoins.
   * @param {string} target
   * @param {{ history: import("./timeline.js").Message[], more?: boolean }} ack
   */
  async function missedBeyond(target, ack) {
    const history = [...ack.history];
    let more = ack.more === true;
    while (more && target === room && connection.online) {
      const last = history[history.length - 1];
      if (last === undefined) break;
      const page = await connection.history(target, { epoch: last.epoch, seq: last.seq });
      if (!page.ok) break;
      history.push(...page.messages);
      more = page.more === true && page.messages.length > 0;
    }
    return history;
  }

  /**
   * Sends the oldest unconfirmed message, if the room is joined and none is in flight; every
   * answer sends the next one, so this runs until the outbox is empty or the page is offline.
   */
  async function pump() {
    const box = outbox;
    const target = room;
    if (!joined || target === null) return;
    const pending = box.next();
    if (pending === null) return;
    const ack = await connection.send(target, pending.text, pending.clientId);
    if (box !== outbox) return; // another room came on screen meanwhile
    const outcome = box.answered(pending.clientId, ack);
    if (ack.ok) {
      show(timeline.acked(ack.message));
      if (timeline.holds(ack.message)) {
        view.dropPending(pending.clientId);
      } else {
        // The ack can beat live messages with lower seqs; if they do not follow, they were lost.
        setTimeout(() => {
          if (box !== outbox) return;
          view.dropPending(pending.clientId);
          if (!timeline.holds(ack.message)) resync();
        }, ACK_AHEAD_MS);
      }
    } else if (outcome === "refused") {
      view.dropPending(pending.clientId);
      view.restoreDraft(pending.text);
      view.showError(ack.error);
    } else if (outcome === "retry") {
      // After a lost connection the rejoin resends it; otherwise try again shortly.
      if (ack.error.code === "not_in_room") resync();
      else if (joined) setTimeout(pump, RETRY_MS);
      return;
    }
    pump();
  }

  /** @param {string} text */
  function send(text) {
    if (room === null || !entered) return false;
    view.addPending(outbox.add(text), me.name);
    pump();
    return true;
  }

  function followUrl() {
    const next = roomFromHash(location.hash);
    if (next !== null && next === room) return;
    const previous = room;
    room = next;
    joined = false;
    entered = false;
    refreshComposer();
    timeline.reset();
    // Messages not yet sent to the previous room are dropped with its page: sent later they would
    // land in a room the user left.
    outbox = new Outbox();
    if (previous !== null && connection.online) serial(() => connection.leave(previous));
    if (next === null) {
      view.askRoom((chosen) => {
        if (validRoom(chosen)) location.hash = hashForRoom(chosen);
      });
      return;
    }
    view.showRoom(next, send);
    scrollback.reset(next);
    serial(() => join(next));
  }

  window.addEventListener("hashchange", followUrl);
  followUrl();
}
