// The outbox: messages typed but not confirmed, resent with the same clientId, one at a time, in
// the order typed, until the server stores or refuses them.

import assert from "node:assert/strict";
import { test } from "node:test";
import { newClientId, Outbox, retryable } from "../src/outbox.js";

const ok = { ok: true };
const failed = (code) => ({ ok: false, error: { code, message: "" } });

/** An outbox whose clientIds are c1, c2, … */
function outbox() {
  let n = 0;
  return new Outbox(() => `c${++n}`);
}

test("messages go out one at a time, in the order typed", () => {
  const box = outbox();
  box.add("one");
  box.add("two");
  const first = box.next();
  assert.deepEqual(first, { clientId: "c1", text: "one" });
  assert.equal(box.next(), null, "nothing else while one is in flight");
  assert.equal(box.answered("c1", ok), "stored");
  assert.deepEqual(box.next(), { clientId: "c2", text: "two" });
  assert.equal(box.answered("c2", ok), "stored");
  assert.equal(box.next(), null);
  assert.deepEqual(box.pending(), []);
});

test("a retry resends the same message with the same clientId, before the next one", () => {
  const box = outbox();
  box.add("one");
  box.add("two");
  box.next();
  assert.equal(box.answered("c1", failed("timeout")), "retry");
  assert.deepEqual(box.next(), { clientId: "c1", text: "one" }, "same clientId, so never stored twice");
  assert.equal(box.answered("c1", failed("internal")), "retry");
  assert.deepEqual(box.next()?.clientId, "c1");
  assert.equal(box.answered("c1", failed("not_in_room")), "retry");
  assert.deepEqual(box.next()?.clientId, "c1");
  assert.equal(box.answered("c1", ok), "stored");
  assert.deepEqual(box.next()?.clientId, "c2");
});

test("a refused message is given up, and the next one goes", () => {
  const box = outbox();
  box.add("x".repeat(5000));
  box.add("fine");
  box.next();
  assert.equal(box.answered("c1", failed("too_long")), "refused");
  assert.deepEqual(box.pending().map((p) => p.text), ["fine"]);
  assert.equal(box.next()?.clientId, "c2");
});

test("a message whose stored copy arrived first is not sent again", () => {
  const box = outbox();
  box.add("one");
  box.add("two");
  box.next();
  // The node stored c1 and died before acking; the rejoin's history brings it.
  assert.equal(box.answered("c1", failed("timeout")), "retry");
  assert.equal(box.settle("c1"), true);
  assert.equal(box.next()?.clientId, "c2");
  // A message settled while in flight: its late ack changes nothing.
  assert.equal(box.settle("c2"), true);
  assert.equal(box.answered("c2", ok), "gone");
  assert.equal(box.settle("c2"), false);
  assert.equal(box.next(), null);
});

test("only failures that can pass are retried", () => {
  for (const code of ["timeout", "not_in_room", "internal"]) assert.equal(retryable(code), true, code);
  for (const code of ["too_long", "bad_request", "rate_limited", "unauthorized", "whatever"]) {
    assert.equal(retryable(code), false, code);
  }
});

test("clientIds are UUIDs where the browser has randomUUID, random hex otherwise", () => {
  assert.match(newClientId(), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const insecure = { getRandomValues: (bytes) => globalThis.crypto.getRandomValues(bytes) };
  const ids = new Set(Array.from({ length: 100 }, () => newClientId(insecure)));
  assert.equal(ids.size, 100);
  for (const id of ids) assert.match(id, /^[0-9a-f]{32}$/);
  assert.match(newClientId(undefined), /^[0-9a-f]{8}-/, "undefined means the global crypto");
  assert.match(newClientId(/** @type {any} */ ({})), /^[0-9a-f]{32}$/, "no crypto at all still works");
});
