// The page's logic that needs no browser: URLs, names, error wording, the online list (the message
// timeline and the outbox have their own files).

import assert from "node:assert/strict";
import { test } from "node:test";
import { describeError } from "../src/errors.js";
import { nameProblem } from "../src/identity.js";
import { Roster } from "../src/roster.js";
import { hashForRoom, roomFromHash } from "../src/route.js";

test("rooms round-trip through the URL hash, odd characters included", () => {
  for (const room of ["lobby", "café & co", "a/b#c?d", "日本語", "x".repeat(128)]) {
    assert.equal(roomFromHash(hashForRoom(room)), room);
  }
  assert.equal(hashForRoom("lobby"), "#/room/lobby");
});

test("hashes naming no acceptable room give none", () => {
  for (const hash of ["", "#", "#/", "#/room/", "#/room/%20%20", "#/room/%E0%A4%A", "#/room/a%0Ab", "#/lobby"]) {
    assert.equal(roomFromHash(hash), null, hash);
  }
  assert.equal(roomFromHash(hashForRoom("x".repeat(129))), null);
});

test("names follow the server's rule", () => {
  assert.equal(nameProblem("Ann"), null);
  assert.equal(nameProblem("é".repeat(64)), null);
  assert.notEqual(nameProblem("  "), null);
  assert.notEqual(nameProblem("é".repeat(65)), null);
  assert.notEqual(nameProblem("a\u0007b"), null);
});

test("errors read as a headline plus the server's details", () => {
  assert.equal(
    describeError({ code: "too_long", message: "message is 250 characters; at most 200 allowed" }),
    "Message too long: message is 250 characters; at most 200 allowed",
  );
  assert.match(describeError({ code: "rate_limited", message: "" }), /^Slow down/);
  assert.match(describeError({ code: "constructor", message: "?" }), /^Something went wrong: \?$/);
});

test("the online list follows presence deltas from the join ack's full list", () => {
  const roster = new Roster();
  const ann = { id: "ann", name: "Ann" };
  const bea = { id: "bea", name: "Bea" };
  assert.deepEqual(roster.reset([ann]), [ann]);
  assert.deepEqual(roster.apply({ room: "r", count: 2, joined: [bea] }), [ann, bea]);
  assert.deepEqual(roster.apply({ room: "r", count: 2, joined: [bea] }), [ann, bea], "no duplicate");
  assert.deepEqual(roster.apply({ room: "r", count: 1, left: [ann] }), [bea]);
  assert.deepEqual(roster.reset([]), []);
});

test("a leave notice sent twice is shown once", () => {
  const roster = new Roster();
  const ann = { id: "ann", name: "Ann" };
  roster.reset([ann]);
  assert.equal(roster.repeated({ kind: "leave", user: ann, id: "17" }), false);
  assert.equal(roster.repeated({ kind: "leave", user: ann, id: "17" }), true);
  assert.equal(roster.repeated({ kind: "leave", user: ann, id: "18" }), false);
  assert.equal(roster.repeated({ kind: "join", user: ann }), false);
  assert.equal(roster.repeated({ kind: "join", user: ann }), false, "notices without id never repeat");
});
