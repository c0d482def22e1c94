// End-to-end test of the web client's recovery in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core): a page whose node crashes ends with every message of the room exactly
// once, in order, its own messages included.
//
//   node e2e/recovery.e2e.mjs NODE1_URL NODE2_URL ARTIFACTS_DIR
//
// Ann is on node 1, Bea on node 2, in one room. Bea sends BEA_MESSAGES messages through the page,
// one every SEND_EVERY_MS; Ann's page misses the live event of one of them (the test drops it) and
// must rejoin to get it. Part-way through, this script prints the line `KILL 1` and waits for the
// line `RESTARTED` on stdin: whoever runs it (tests/tests/browser.rs) kills node 1 with SIGKILL,
// starts it again on the same port, then answers. Ann sends messages around the kill: one that
// node 1 stores but whose ack (and live echo) never reach her page (the test drops those frames, as
// a crash between storing and answering would), one racing the kill, one while her node is down,
// one right after it is back and one once she is online again. At the end both pages must show the
// same messages, each exactly once, in seq order, with no gap and no "could not be recovered" line.
// Last, Ann's node stays up but loses the ack and the live echo of one more message: the page
// sends it again after its ack timeout, and the server must not post it twice.
// Exits non-zero at the first failed check; prints what each page saw and how often it reconnected.

import { createInterface } from "node:readline";
import {
  check,
  commandLine,
  deadline,
  eventually,
  failed,
  launch,
  pageErrors,
  pages,
  passed,
  say,
  screenshot,
  signIn,
  sleep,
  watch,
} from "./harness.mjs";

const [node1, node2] = commandLine("recovery.e2e.mjs");
const BEA_MESSAGES = 40;
const SEND_EVERY_MS = 100;
/** Bea's message after which node 1 is killed. */
const KILL_AFTER = 10;
/** Long enough for a restart and socket.io-client's reconnection backoff (up to 5 s). */
const RECOVERY_MS = 30_000;
const DEADLINE_MS = 150_000;


// The orchestrator's answers, one per line.
const answers = createInterface({ input: process.stdin });
/** @type {((line: string) => void)[]} */
const waitingForLine = [];
answers.on("line", (line) => waitingForLine.shift()?.(line.trim()));
/** @param {string} expected */
function answer(expected) {
  return new Promise((resolve, reject) => {
    waitingForLine.push((line) =>
      line === expected ? resolve(line) : reject(new Error(`expected ${expected} on stdin, got ${line}`)),
    );
  });
}



const started = Date.now();
/** @param {string} what */
const elapsed = () => ((Date.now() - started) / 1000).toFixed(2);
/** @param {string} what */
const log = (what) => console.log(`     ${elapsed()} s: ${what}`);

/**
 * What a page shows, read from its `data-testid`s, and how often it came online (counted by the
 * init script below).
 * @param {import("playwright-core").Page} page
 */
function seen(page) {
  return page.evaluate(() => {
    const all = (id) => [...document.querySelectorAll(`[data-testid="${id}"]`)];
    const one = (id) => /** @type {HTMLElement} */ (document.querySelector(`[data-testid="${id}"]`));
    const error = one("error");
    const messages = all("message").map((li) => ({
      text: li.querySelector(".text")?.textContent ?? "",
      seq: li.dataset.seq === undefined ? null : Number(li.dataset.seq),
      epoch: li.dataset.epoch ?? null,
      pending: li.classList.contains("pending"),
    }));
    return {
      state: one("connection").dataset.state,
      online: all("online-user").length,
      stored: messages.filter((m) => !m.pending),
      pending: messages.filter((m) => m.pending).map((m) => m.text),
      lost: all("lost").map((li) => li.textContent),
      error: error.hidden ? null : { code: error.dataset.code, text: one("error-text").textContent },
      onlineCount: /** @type {any} */ (window).__timesOnline ?? 0,
    };
  });
}

const browser = await launch();

const watchdog = deadline(DEADLINE_MS);

/** Texts of messages whose ack and live echo Ann's page must not receive. */
const hidden = new Set();
/** @type {{ kind: "ack" | "event", text: string }[]} the frames kept from Ann's page */
const dropped = [];
/** `history` pages Ann's page asked for: its rejoins' acks hold a few messages, the rest is paged. */
let historyPages = 0;
/** @type {Map<string, number>} how often Ann's page sent each message (retries included) */
const attempts = new Map();
/** @type {("since" | "fresh")[]} Ann's page's joins, with `since` or without */
const joins = [];

/** Counts a `message` request of Ann's page. @param {string | Buffer} frame */
function countAttempt(frame) {
  if (typeof frame === "string" && /^42\d*\["history",/.test(frame)) historyPages += 1;
  const message = chatMessage(frame);
  if (message !== null) attempts.set(message.text, (attempts.get(message.text) ?? 0) + 1);
  const join = typeof frame === "string" ? /^42\d*\["join",(.*)\]$/s.exec(frame) : null;
  if (join !== null) {
    const since = JSON.parse(join[1]).since;
    joins.push(since ? `since ${since.seq} at ${elapsed()} s` : `fresh at ${elapsed()} s`);
  }
}

/**
 * The chat message in a Socket.IO frame from the server, if it carries one: an engine.io message
 * (`4`) holding a Socket.IO event (`2`, here `["message", Message]`) or ack (`3` and its id, here
 * `[{ ok, message }]`) of the main namespace.
 * @param {string | Buffer} frame
 * @returns {{ kind: "ack" | "event", text: string } | null}
 */
function chatMessage(frame) {
  const match = typeof frame === "string" ? /^4([23])\d*(\[.*)$/s.exec(frame) : null;
  if (match === null) return null;
  try {
    const data = JSON.parse(match[2]);
    // An event's message is its argument (the page sends `{ room, text, clientId }`, the server a
    // Message); an ack's is the `message` of its answer.
    const message = match[1] === "2" ? (data[0] === "message" ? data[1] : null) : data[0]?.message;
    return typeof message?.text === "string"
      ? { kind: match[1] === "2" ? "event" : "ack", text: message.text }
      : null;
  } catch {
    return null;
  }
}

/**
 * A person in their own browser context (own storage) whose page counts how often its connection
 * badge turns "online": the first connection, then one per reconnection.
 * @param {string} who
 */
async function person(who) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 900 } });
  if (who === "ann") {
    // Ann's WebSocket goes through here, so that frames of `hidden` messages can be lost on the way.
    await context.routeWebSocket(/\/socket\.io\//, (page) => {
      const server = page.connectToServer();
      page.onMessage((frame) => {
        countAttempt(frame);
        server.send(frame);
      });
      server.onMessage((frame) => {
        const message = chatMessage(frame);
        if (message !== null && hidden.has(message.text)) dropped.push(message);
        else page.send(frame);
      });
    });
  }
  await context.addInitScript(() => {
    const w = /** @type {any} */ (window);
    w.__timesOnline = 0;
    document.addEventListener("DOMContentLoaded", () => {
      const badge = /** @type {HTMLElement} */ (document.querySelector('[data-testid="connection"]'));
      let last = badge.dataset.state;
      if (last === "online") w.__timesOnline += 1;
      new MutationObserver(() => {
        const state = badge.dataset.state;
        if (state === "online" && last !== "online") w.__timesOnline += 1;
        last = state;
      }).observe(badge, { attributes: true, attributeFilter: ["data-state"] });
    });
  });
  const page = await context.newPage();
  if (who === "ann") {
    // Before the upgrade to WebSocket (right after a reconnection) frames go by HTTP long-polling,
    // several to a request, separated by a record separator.
    page.on("request", (request) => {
      if (request.method() === "POST" && request.url().includes("/socket.io/")) {
        for (const frame of (request.postData() ?? "").split("\x1e")) countAttempt(frame);
      }
    });
  }
  return watch(who, page);
}


/**
 * Checks that a page shows exactly `expected` (in any interleaving of the two senders, but each
 * sender's messages in the order sent), each once, in seq order without a gap.
 * @param {string} who
 * @param {Awaited<ReturnType<typeof seen>>} view
 * @param {string[]} expected
 */
function checkComplete(who, view, expected) {
  const texts = view.stored.map((m) => m.text);
  const duplicates = texts.filter((t, i) => texts.indexOf(t) !== i);
  check(`${who}: no message twice`, duplicates.length === 0, duplicates);
  const missing = expected.filter((t) => !texts.includes(t));
  check(`${who}: no message missing`, missing.length === 0, missing);
  check(`${who}: nothing else`, texts.length === expected.length, texts);
  const epochs = new Set(view.stored.map((m) => m.epoch));
  check(`${who}: one epoch`, epochs.size === 1, [...epochs]);
  const seqs = view.stored.map((m) => m.seq);
  const contiguous = seqs.every((seq, i) => seq !== null && (i === 0 || seq === seqs[i - 1] + 1));
  check(`${who}: in seq order, no gap (seq ${seqs[0]}..${seqs.at(-1)})`, contiguous, seqs);
  for (const sender of ["ann", "bea"]) {
    const own = texts.filter((t) => t.startsWith(`${sender} `));
    const sent = expected.filter((t) => t.startsWith(`${sender} `));
    check(`${who}: ${sender}'s messages in the order sent`, own.join("|") === sent.join("|"), own);
  }
  check(`${who}: nothing pending`, view.pending.length === 0, view.pending);
  check(`${who}: no "could not be recovered" line`, view.lost.length === 0, view.lost);
}

const room = `recovery-${Date.now().toString(36)}`;
/** @type {string[]} every message sent, in the order sent */
const sent = [];
try {
  const bea = await person("bea");
  await bea.goto(`${node2}/#/room/${room}`);
  await signIn(bea, "Bea");
  await eventually("Bea, on node 2, is in the room", () => seen(bea), (s) => s.state === "online" && s.online === 1);
  const ann = await person("ann");
  await ann.goto(`${node1}/#/room/${room}`);
  await signIn(ann, "Ann");
  await eventually("Ann, on node 1, is in the room with Bea", () => seen(ann), (s) => s.state === "online" && s.online === 2);

  /** @param {import("playwright-core").Page} page @param {string} text */
  const send = async (page, text) => {
    sent.push(text);
    await say(page, text);
  };
  await send(ann, "ann 1");
  await eventually(
    "Bea gets Ann's first message",
    () => seen(bea),
    (s) => s.stored.some((m) => m.text === "ann 1"),
  );

  // Live delivery is at most once: Ann misses one of Bea's messages, sees the gap in seq when the
  // next one comes, and rejoins with `since` to get it.
  hidden.add("bea 05");
  let beaSent = 0;
  /** @type {() => void} */
  let resumeBea = () => {};
  const beaPaused = new Promise((resolve) => (resumeBea = resolve));
  const beaSends = (async () => {
    for (let i = 1; i <= BEA_MESSAGES; i++) {
      await send(bea, `bea ${String(i).padStart(2, "0")}`);
      beaSent = i;
      // Bea pauses while node 1 stores "ann 2" and dies: a message of hers arriving in between
      // would show Ann's page the gap where "ann 2" is and make it rejoin before the kill.
      if (i === KILL_AFTER) await beaPaused;
      await sleep(SEND_EVERY_MS);
    }
  })();

  while (beaSent < KILL_AFTER) await sleep(10);
  await eventually(
    `Ann's page has Bea's messages up to ${KILL_AFTER}`,
    () => seen(ann),
    (s) => s.stored.some((m) => m.text === `bea ${String(KILL_AFTER).padStart(2, "0")}`),
  );
  check("Ann's page missed the live \"bea 05\"", dropped.some((frame) => frame.text === "bea 05"), dropped);
  await eventually(
    "Ann's page fills the gap by rejoining with since",
    () => seen(ann),
    (s) => s.stored.some((m) => m.text === "bea 05") && joins.filter((j) => j.startsWith("since")).length === 1,
  );
  // Stored by node 1, which then dies before its answer reaches Ann: the page must neither lose it
  // nor, when it tries again with the same clientId, post it twice.
  hidden.add("ann 2");
  await send(ann, "ann 2");
  await eventually("node 1 acks \"ann 2\", and the ack is lost", async () => dropped.length, (n) => n > 0);
  await eventually(
    "Bea gets \"ann 2\" from node 1",
    () => seen(bea),
    (s) => s.stored.some((m) => m.text === "ann 2"),
  );
  const restarted = answer("RESTARTED");
  console.log("KILL 1");
  log(`asked to kill node 1 after Bea's message ${beaSent}`);
  // Typed while "ann 2" is unanswered: it waits its turn, and must not overtake it.
  await send(ann, "ann 3");
  const gone = await eventually(
    "Ann's page notices its node is gone",
    () => seen(ann),
    (s) => s.state !== "online",
  );
  hidden.clear();
  resumeBea();
  log(`frames kept from Ann's page: ${JSON.stringify(dropped)}`);
  check('"ann 2" is still pending on Ann\'s page', gone.pending.includes("ann 2"), gone.pending);
  // Typed while the node is down: it waits, shown as pending.
  await send(ann, "ann 4");
  const down = await eventually(
    "Ann's message typed while offline is shown as pending",
    () => seen(ann),
    (s) => s.pending.includes("ann 4"),
  );
  log(`Ann's page is ${down.state}; pending: ${JSON.stringify(down.pending)}`);
  await screenshot(ann, "recovery-ann-offline");
  await restarted;
  log("node 1 is back");
  // Right after the restart, possibly before the page reconnected.
  await send(ann, "ann 5");
  await eventually("Ann's page is online again", () => seen(ann), (s) => s.state === "online", RECOVERY_MS);
  log(`Ann's page is online again (Bea has sent ${beaSent})`);
  await send(ann, "ann 6");
  await beaSends;
  log("Bea sent all her messages");

  const everything = (s) =>
    s.pending.length === 0 && sent.every((t) => s.stored.some((m) => m.text === t));
  await eventually("Ann's page has every message", () => seen(ann), everything, RECOVERY_MS);
  await eventually("Bea's page has every message", () => seen(bea), everything, RECOVERY_MS);

  // Stored, but neither its ack nor its live echo reach Ann, whose node stays up: the request
  // times out and the page sends it again with the same clientId, which the server must answer
  // with the stored message without posting it again.
  hidden.add("ann 7");
  await send(ann, "ann 7");
  const lost7 = () => dropped.filter((frame) => frame.text === "ann 7").length;
  await eventually('node 1 stores "ann 7"; its ack and live echo are lost', async () => lost7(), (n) => n === 2);
  hidden.delete("ann 7");
  await eventually("Ann's page gets \"ann 7\" by trying again", () => seen(ann), everything, RECOVERY_MS);
  check('Ann\'s page sent "ann 7" twice', attempts.get("ann 7") === 2, attempts.get("ann 7"));
  // Anything late (a duplicate, a stray line) would show up within this.
  await sleep(1000);
  const annFinal = await seen(ann);
  const beaFinal = await seen(bea);
  checkComplete("Ann", annFinal, sent);
  checkComplete("Bea", beaFinal, sent);
  check(
    "both pages show the same messages in the same order",
    annFinal.stored.map((m) => m.text).join("|") === beaFinal.stored.map((m) => m.text).join("|"),
  );
  check("Ann's page reconnected", annFinal.onlineCount >= 2, annFinal.onlineCount);
  check("Ann's catch-up took `history` pages", historyPages > 0, historyPages);
  check("no error shown to Ann", annFinal.error === null, annFinal.error);
  check("no error shown to Bea", beaFinal.error === null, beaFinal.error);
  check("no page error", pageErrors.length === 0, pageErrors);
  log(
    `Ann's page sent ${JSON.stringify(Object.fromEntries(attempts))}; joined ${JSON.stringify(joins)}; ` +
      `asked for ${historyPages} history pages`,
  );
  console.log(
    `counts: sent ${sent.length} (ann ${sent.filter((t) => t.startsWith("ann")).length}, bea ${BEA_MESSAGES}); ` +
      `Ann's page shows ${annFinal.stored.length} (seq ${annFinal.stored[0]?.seq}..${annFinal.stored.at(-1)?.seq}), ` +
      `Bea's ${beaFinal.stored.length}; reconnects: Ann ${annFinal.onlineCount - 1}, Bea ${beaFinal.onlineCount - 1}`,
  );
  await screenshot(ann, "recovery-ann-final");
} catch (err) {
  for (const [who, page] of pages) {
    const view = page.isClosed() ? null : await seen(page).catch(() => null);
    if (view) {
      console.log(`     ${who}'s page: ${view.state}, online ${view.onlineCount} times, lost ${JSON.stringify(view.lost)}`);
      console.log(`     ${who} shows: ${view.stored.map((m) => `${m.seq}:${m.text}`).join(", ")}`);
      console.log(`     ${who} pending: ${JSON.stringify(view.pending)}`);
    }
  }
  console.log(`     sent: ${sent.join(", ")}`);
  await failed(browser, err, "recovery-");
}
answers.close();
await passed(browser, watchdog, started);
