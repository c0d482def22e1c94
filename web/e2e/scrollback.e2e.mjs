// End-to-end test of the web client's scrollback in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core): a room holds more history than one join shows; scrolling to the top
// of the log loads earlier pages until "Beginning of the room",
// and the log then holds every message of the room once, in order.
//
//   node e2e/scrollback.e2e.mjs NODE1_URL NODE2_URL ARTIFACTS_DIR
//
// The nodes' HISTORY_ACK_BYTES must be small enough that MESSAGES do not fit one join, and their
// rate limit must let one socket post MESSAGES at once. Exits non-zero at the first failed check.

import { io } from "socket.io-client";

import {
  check,
  commandLine,
  deadline,
  eventually,
  failed,
  launch,
  pageErrors,
  passed,
  screenshot,
  signIn,
  watch,
} from "./harness.mjs";

const [node1, node2] = commandLine("scrollback.e2e.mjs");
const MESSAGES = 150;
const DEADLINE_MS = 90_000;
const text = (/** @type {number} */ i) => `m${String(i).padStart(3, "0")}`;

const browser = await launch();
const watchdog = deadline(DEADLINE_MS);

/** The log as the page shows it. @param {import("playwright-core").Page} page */
function log(page) {
  return page.evaluate(() => {
    const earlier = /** @type {HTMLElement} */ (document.querySelector('[data-testid="earlier"]'));
    return {
      earlier: earlier?.dataset.state ?? "",
      label: earlier?.textContent ?? "",
      texts: [...document.querySelectorAll('[data-testid="message"] .text')].map((t) => t.textContent),
      lost: document.querySelectorAll('[data-testid="lost"]').length,
    };
  });
}

const room = `scroll-${Date.now().toString(36)}`;
const started = Date.now();
try {
  // The room's history, posted before anyone opens it.
  const poster = io(node1, { auth: { userId: "poster", name: "Poster" }, transports: ["websocket"] });
  await new Promise((resolve) => poster.on("connect", resolve));
  const joined = await poster.emitWithAck("join", { room });
  check("the poster joined", joined.ok === true, joined);
  for (let i = 1; i <= MESSAGES; i++) {
    const ack = await poster.emitWithAck("message", { room, text: text(i) });
    if (!ack.ok) check(`message ${i} stored`, false, ack);
  }
  poster.disconnect();
  check(`${MESSAGES} messages stored`, true);

  const context = await browser.newContext({ viewport: { width: 900, height: 640 } });
  const ann = watch("ann", await context.newPage());
  await ann.goto(`${node2}/#/room/${room}`);
  await signIn(ann, "Ann");
  const first = await eventually(
    "Ann's join shows the newest messages and offers earlier ones",
    () => log(ann),
    (l) => l.texts.at(-1) === text(MESSAGES) && l.earlier === "more",
  );
  check("one join shows only part of the room", first.texts.length < MESSAGES, first.texts.length);

  let loads = 0;
  for (;;) {
    const before = await log(ann);
    if (before.earlier === "beginning") break;
    check("scrollback ends within 20 pages", loads < 20, before);
    // Scroll the log to its top, as a reader would.
    await ann.getByTestId("messages").evaluate((el) => {
      el.scrollTop = 0;
      el.dispatchEvent(new Event("scroll"));
    });
    loads += 1;
    const after = await eventually(
      `page ${loads} of earlier messages arrives`,
      () => log(ann),
      (l) => l.earlier !== "loading" && l.texts.length > before.texts.length,
    );
    check(`page ${loads} goes before what was shown`, after.texts.at(-1) === text(MESSAGES));
  }
  const all = await log(ann);
  check("the top of the log says so", all.label === "Beginning of the room", all.label);
  check(
    `after ${loads} pages the log holds every message once, in order`,
    JSON.stringify(all.texts) === JSON.stringify(Array.from({ length: MESSAGES }, (_, i) => text(i + 1))),
    all.texts,
  );
  check('no "could not be recovered" line', all.lost === 0);
  check("no page error", pageErrors.length === 0, pageErrors);
  await ann.getByTestId("messages").evaluate((el) => (el.scrollTop = 0));
  await screenshot(ann, "scrollback-beginning");
} catch (err) {
  await failed(browser, err);
}
await passed(browser, watchdog, started);
