// The message timeline: each stored message once, in seq order, whatever order and however often
// history, live events and acks bring them; gaps and lost sequences noticed.

import assert from "node:assert/strict";
import { test } from "node:test";
import { Timeline } from "../src/timeline.js";

/** A stored message of room "r": seq `seq` of epoch `epoch`. */
const message = (seq, epoch = "e1") => ({
  id: `${epoch}-${seq}`,
  room: "r",
  seq,
  epoch,
  from: { id: "u", name: "U" },
  text: `m${seq}`,
  ts: seq,
});
const seqs = (change) => change.show.map((m) => m.seq);
const history = (from, to, epoch) =>
  Array.from({ length: to - from + 1 }, (_, i) => message(from + i, epoch));

/** A timeline that joined with history 1..n. */
function joinedUpTo(n) {
  const timeline = new Timeline();
  timeline.joining();
  timeline.joined(history(1, n));
  return timeline;
}

test("a first join shows the history and knows where it stands", () => {
  const timeline = new Timeline();
  assert.equal(timeline.position(), null, "nothing held: a join sends no since");
  timeline.joining();
  const change = timeline.joined(history(5, 7));
  assert.deepEqual(seqs(change), [5, 6, 7], "the history window need not start at 1");
  assert.equal(change.reset, false);
  assert.equal(change.lost, false);
  assert.deepEqual(timeline.position(), { epoch: "e1", seq: 7 });
});

test("live messages that beat the join ack follow the history, each once", () => {
  const timeline = new Timeline();
  timeline.joining();
  assert.deepEqual(seqs(timeline.live(message(3))), []);
  assert.deepEqual(seqs(timeline.live(message(4))), []);
  const change = timeline.joined(history(1, 3));
  assert.deepEqual(seqs(change), [1, 2, 3, 4]);
  assert.equal(change.gap, false);
  assert.deepEqual(seqs(timeline.live(message(5))), [5]);
  assert.deepEqual(seqs(timeline.live(message(5))), [], "a repeat is dropped");
  assert.deepEqual(seqs(timeline.acked(message(5))), [], "so is the sender's ack of it");
});

test("live messages are shown in seq order, whatever order they came in", () => {
  const timeline = joinedUpTo(2);
  // A join ack's held messages are sorted, so are those waiting beyond a gap.
  timeline.joining();
  timeline.live(message(5));
  timeline.live(message(4));
  timeline.live(message(3));
  assert.deepEqual(seqs(timeline.joined([], true)), [3, 4, 5]);
});

test("a gap in live messages asks for one rejoin, which fills it", () => {
  const timeline = joinedUpTo(3);
  const skipped = timeline.live(message(5));
  assert.deepEqual(seqs(skipped), [], "5 waits for 4");
  assert.equal(skipped.gap, true);
  assert.equal(timeline.live(message(6)).gap, false, "one rejoin is enough");
  assert.deepEqual(timeline.position(), { epoch: "e1", seq: 3 }, "since is the last contiguous");
  timeline.joining();
  timeline.live(message(7));
  const change = timeline.joined(history(4, 6), true);
  assert.deepEqual(seqs(change), [4, 5, 6, 7]);
  assert.equal(change.gap, false);
  assert.equal(change.lost, false);
  assert.deepEqual(timeline.position(), { epoch: "e1", seq: 7 });
});

test("a late live message fills a gap without a rejoin", () => {
  const timeline = joinedUpTo(3);
  assert.equal(timeline.live(message(5)).gap, true);
  assert.deepEqual(seqs(timeline.live(message(4))), [4, 5]);
});

test("a gap that is still open after the rejoin asks for another", () => {
  const timeline = joinedUpTo(3);
  assert.equal(timeline.live(message(5)).gap, true);
  timeline.joining();
  timeline.live(message(9));
  const change = timeline.joined(history(4, 5), true);
  assert.deepEqual(seqs(change), [4, 5]);
  assert.equal(change.gap, true, "6..8 are missing before 9");
});

test("an ack ahead of the live stream waits without asking for a rejoin", () => {
  const timeline = joinedUpTo(3);
  const mine = message(5);
  const early = timeline.acked(mine);
  assert.deepEqual(seqs(early), []);
  assert.equal(early.gap, false);
  assert.equal(timeline.holds(mine), false);
  assert.deepEqual(seqs(timeline.live(message(4))), [4, 5]);
  assert.deepEqual(seqs(timeline.live(message(5))), [], "its live echo is a repeat");
  assert.equal(timeline.holds(mine), true);
});

test("an ack during a join is held like a live message", () => {
  const timeline = joinedUpTo(3);
  timeline.joining();
  assert.deepEqual(seqs(timeline.acked(message(5))), []);
  const change = timeline.joined(history(4, 4), true);
  assert.deepEqual(seqs(change), [4, 5]);
  assert.equal(change.gap, false);
});

test("a rejoin with since adds only what was missed", () => {
  const timeline = joinedUpTo(2);
  assert.deepEqual(timeline.position(), { epoch: "e1", seq: 2 });
  timeline.joining();
  const change = timeline.joined([message(3)], true);
  assert.deepEqual(seqs(change), [3]);
  assert.equal(change.reset, false);
  timeline.joining();
  assert.deepEqual(seqs(timeline.joined([], true)), [], "nothing missed");
});

test("a rejoin whose history overlaps what is held shows no message twice", () => {
  const timeline = joinedUpTo(4);
  timeline.joining();
  assert.deepEqual(seqs(timeline.joined(history(3, 6), true)), [5, 6]);
});

test("an unrecovered rejoin resets the room to the latest history and says so", () => {
  const timeline = joinedUpTo(3);
  timeline.joining();
  timeline.live(message(205));
  const change = timeline.joined(history(105, 204), false);
  assert.equal(change.reset, true);
  assert.equal(change.lost, true);
  assert.deepEqual(seqs(change), history(105, 205).map((m) => m.seq));
  assert.deepEqual(timeline.position(), { epoch: "e1", seq: 205 });
});

test("a history that does not continue what is held counts as lost even if called recovered", () => {
  const timeline = joinedUpTo(3);
  timeline.joining();
  const change = timeline.joined(history(6, 7), true);
  assert.equal(change.lost, true);
  assert.deepEqual(seqs(change), [6, 7]);
});

test("a new epoch in live messages asks for a rejoin, which starts the room over", () => {
  const timeline = joinedUpTo(3);
  const change = timeline.live(message(1, "e2"));
  assert.deepEqual(seqs(change), []);
  assert.equal(change.gap, true);
  timeline.joining();
  timeline.live(message(2, "e2"));
  const rejoined = timeline.joined([message(1, "e2")], false);
  assert.equal(rejoined.lost, true);
  assert.deepEqual(
    rejoined.show.map((m) => m.id),
    ["e2-1", "e2-2"],
    "seq 1 and 2 of the new epoch are new messages",
  );
  assert.deepEqual(timeline.position(), { epoch: "e2", seq: 2 });
});

test("a failover's new epoch recovered from since continues the room without a notice", () => {
  // The promoted replica kept 1..3 and numbered 4 in epoch e2: the ack says recovered, e2.
  const timeline = joinedUpTo(3);
  const change = timeline.live(message(4, "e2"));
  assert.equal(change.gap, true);
  timeline.joining();
  timeline.live(message(5, "e2"));
  const rejoined = timeline.joined([message(4, "e2")], true, "e2");
  assert.equal(rejoined.lost, false, "nothing was lost: no reset, no notice");
  assert.equal(rejoined.reset, false);
  assert.deepEqual(rejoined.show.map((m) => m.id), ["e2-4", "e2-5"]);
  assert.deepEqual(timeline.position(), { epoch: "e2", seq: 5 });
  // An empty recovered history still moves the page to the room's epoch.
  const again = joinedUpTo(5);
  again.joining();
  assert.equal(again.joined([], true, "e3").lost, false);
  assert.deepEqual(again.position(), { epoch: "e3", seq: 5 });
});

test("messages of an older epoch held during a join are dropped", () => {
  const timeline = joinedUpTo(3);
  timeline.joining();
  timeline.live(message(4));
  const change = timeline.joined([message(1, "e2")], false);
  assert.deepEqual(change.show.map((m) => m.id), ["e2-1"]);
  assert.equal(change.gap, false);
});

test("an unrecovered rejoin of an emptied room leaves nothing held; the next message starts it", () => {
  const timeline = joinedUpTo(3);
  timeline.joining();
  const change = timeline.joined([], false);
  assert.equal(change.lost, true);
  assert.equal(timeline.position(), null);
  assert.deepEqual(seqs(timeline.live(message(1, "e2"))), [1]);
});

test("without history (HISTORY_LEN=0) the first live message is the start, not a gap", () => {
  const timeline = new Timeline();
  timeline.joining();
  timeline.joined([]);
  const change = timeline.live(message(41));
  assert.deepEqual(seqs(change), [41]);
  assert.equal(change.gap, false);
});

test("a failed join releases what it held; a new room starts empty", () => {
  const timeline = joinedUpTo(6);
  timeline.joining();
  timeline.live(message(7));
  assert.deepEqual(seqs(timeline.failed()), [7]);
  timeline.reset();
  assert.equal(timeline.position(), null);
  assert.deepEqual(seqs(timeline.live(message(7))), [7]);
});
