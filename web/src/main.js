// Wires the page together: name first, then the room of the URL, kept joined across reconnects.

import { connect } from "./connection.js";
import { loadChatterId, loadName, nameProblem, saveChatterId, saveName } from "./identity.js";
import { Roster } from "./roster.js";
import { hashForRoom, roomFromHash, validRoom } from "./route.js";
import { Timeline } from "./timeline.js";
import { createView } from "./view.js";

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
  /** @type {string | null} the room on screen */
  let room = null;
  let online = false;
  /** whether this connection has joined `room` */
  let joined = false;
  // Joins and leaves go out one at a time, so a quick change of rooms cannot reach the server
  // out of order and leave this socket in the wrong room.
  let queue = Promise.resolve();
  /** @param {() => Promise<unknown>} task */
  const serial = (task) => {
    queue = queue.then(task).catch((err) => console.error(err));
  };
  const refreshComposer = () => view.setCanSend(online && joined);

  view.setMe({ id: loadChatterId() ?? "", name });

  const connection = connect(name, {
    state(state, detail) {
      online = state === "online";
      joined &&= online;
      view.setState(state, detail);
      refreshComposer();
    },
    connected() {
      if (room !== null) serial(() => join(room));
    },
    message(message) {
      if (message.room === room) view.addMessages(timeline.live(message));
    },
    presence(update) {
      if (update.room === room && joined) view.showOnline(roster.apply(update));
    },
    notice(notice) {
      if (notice.room === room && joined && !roster.repeated(notice)) view.addNotice(notice);
    },
  });

  /** @param {string | null} target */
  async function join(target) {
    if (target === null || target !== room || !connection.online) return;
    timeline.joining();
    const ack = await connection.join(target, loadChatterId());
    if (target !== room) return;
    if (!ack.ok) {
      view.addMessages(timeline.failed());
      view.showError(ack.error);
      return;
    }
    saveChatterId(ack.chatter.id);
    view.setMe(ack.chatter);
    view.addMessages(timeline.joined(ack.history));
    view.showOnline(roster.reset(ack.online));
    joined = true;
    refreshComposer();
  }

  /** @param {string} text */
  async function send(text) {
    if (room === null) return false;
    const ack = await connection.send(room, text);
    if (!ack.ok) {
      view.showError(ack.error);
      return false;
    }
    view.addMessages(timeline.live(ack.message));
    return true;
  }

  function followUrl() {
    const next = roomFromHash(location.hash);
    if (next !== null && next === room) return;
    const previous = room;
    room = next;
    joined = false;
    refreshComposer();
    timeline.reset();
    if (previous !== null && connection.online) serial(() => connection.leave(previous));
    if (next === null) {
      view.askRoom((chosen) => {
        if (validRoom(chosen)) location.hash = hashForRoom(chosen);
      });
      return;
    }
    view.showRoom(next, send);
    serial(() => join(next));
  }

  window.addEventListener("hashchange", followUrl);
  followUrl();
}
