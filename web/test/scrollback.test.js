import assert from "node:assert/strict";
import { test } from "node:test";

import { createScrollback } from "../src/scrollback.js";

/** @param {number} seq */
const message = (seq, epoch = "e") => ({
  id: `${epoch}:${seq}`,
  room: "r",
  seq,
  epoch,
  from: { id: "u", name: "U" },
  text: String(seq),
  ts: 0,
});

/** A view of a log holding `seqs`, recording what the top of it says. @param {number[]} seqs */
function fakeView(seqs) {
  const view = {
    shown: seqs.map((seq) => message(seq)),
    /** @type {string[]} */
    states: [],
    /** @type {() => void} */
    want: () => {},
    oldestShown: () => (view.shown[0] ? { seq: view.shown[0].seq, epoch: view.shown[0].epoch } : null),
    /** @param {ReturnType<typeof message>[]} messages */
    prependMessages: (messages) => view.shown.unshift(...messages),
    /** @param {string} state */
    setEarlier: (state) => view.states.push(state),
    /** @param {() => void} load */
    onWantEarlier: (load) => (view.want = load),
  };
  return view;
}

/** The room keeps seqs `from`..`to`: a `history { before, limit }` of it. */
function room(from, to, epoch = "e") {
  const asked = [];
  /** @param {string} _room @param {number} before @param {number} limit */
  const older = async (_room, before, limit) => {
    asked.push(before);
    const end = Math.min(before - 1, to);
    const start = Math.max(from, end - limit + 1);
    const messages = [];
    for (let seq = start; seq <= end; seq++) messages.push(message(seq, epoch));
    return { ok: true, messages, more: start > from };
  };
  return { older, asked };
}

const settled = () => new Promise((resolve) => setImmediate(resolve));

test("scrolling back loads pages until the room's first message, each once", async () => {
  const view = fakeView([120, 121, 122]);
  const kept = room(1, 122);
  const scrollback = createScrollback(view, kept.older);
  scrollback.reset("r");
  scrollback.settle();
  assert.equal(view.states.at(-1), "more");
  for (let i = 0; i < 5; i++) {
    view.want();
    view.want(); // a second scroll event while loading asks nothing more
    await settled();
  }
  assert.deepEqual(
    view.shown.map((m) => m.seq),
    Array.from({ length: 122 }, (_, i) => i + 1),
  );
  assert.deepEqual(kept.asked, [120, 70, 20]);
  assert.equal(view.states.at(-1), "beginning");
  assert.ok(view.states.includes("loading"));
});

test("the room's first message on screen, or an empty room, offers nothing earlier", () => {
  const first = fakeView([1, 2]);
  createScrollback(first, room(1, 2).older).settle();
  assert.equal(first.states.at(-1), "beginning");
  const empty = fakeView([]);
  createScrollback(empty, room(1, 0).older).settle();
  assert.equal(empty.states.at(-1), "beginning");
});

test("messages of another epoch, or not older than what is shown, are never added", async () => {
  const view = fakeView([10, 11]);
  const other = room(1, 9, "other");
  const scrollback = createScrollback(view, other.older);
  scrollback.reset("r");
  view.want();
  await settled();
  assert.deepEqual(view.shown.map((m) => m.seq), [10, 11]);
  assert.equal(view.states.at(-1), "beginning");
});
