// End-to-end test of the web client in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core) against two chat-server nodes of one cluster.
//
//   node e2e/chat.e2e.mjs NODE1_URL NODE2_URL ARTIFACTS_DIR
//
// LEAVE_GRACE_MS and MAX_MESSAGE_LEN must be those of the nodes. Ann chats from node 1, Bea from
// node 2 on a phone-sized screen; Ann refreshes (Bea must see nothing), then leaves (Bea must see
// one leave notice, after the grace). Screenshots of both pages are saved in ARTIFACTS_DIR. Exits
// non-zero at the first failed check.

import {
  WAIT_MS,
  check,
  commandLine,
  deadline,
  eventually,
  failed,
  launch,
  pageErrors,
  passed,
  say,
  screenshot,
  signIn,
  sleep,
  watch,
} from "./harness.mjs";

const [node1, node2] = commandLine("chat.e2e.mjs");
const GRACE_MS = Number(process.env.LEAVE_GRACE_MS ?? 1500);
const MAX_LEN = Number(process.env.MAX_MESSAGE_LEN ?? 200);
const DEADLINE_MS = 120_000;





/** What a page shows, read from its `data-testid`s. @param {import("playwright-core").Page} page */
function seen(page) {
  return page.evaluate(() => {
    const all = (id) => [...document.querySelectorAll(`[data-testid="${id}"]`)];
    const one = (id) => /** @type {HTMLElement} */ (document.querySelector(`[data-testid="${id}"]`));
    const error = one("error");
    return {
      state: one("connection").dataset.state,
      me: one("me").dataset.id ?? "",
      online: all("online-user").map((li) => li.dataset.id).sort(),
      onlineCount: one("online-count").textContent,
      messages: all("message").map((li) => ({
        from: li.querySelector(".from")?.textContent,
        text: li.querySelector(".text")?.textContent,
      })),
      notices: all("notice").map((li) => ({ kind: li.dataset.kind, user: li.dataset.user })),
      error: error.hidden ? null : { code: error.dataset.code, text: one("error-text").textContent },
      input: /** @type {HTMLInputElement} */ (one("message-input")).value,
    };
  });
}

const browser = await launch();

const watchdog = deadline(DEADLINE_MS);

/** @type {string[]} */
const offsite = [];

/**
 * A person in their own browser context (own storage), on the given node.
 * @param {string} who
 * @param {import("playwright-core").BrowserContextOptions} options
 */
async function person(who, options) {
  const context = await browser.newContext(options);
  // Anything but this machine's nodes is recorded and never sent: the page must need nothing else.
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith("data:") || new URL(url).hostname === "127.0.0.1") return route.continue();
    offsite.push(url);
    return route.abort();
  });
  const page = await context.newPage();
  return watch(who, page);
}


const room = `e2e-${Date.now().toString(36)}`;
const started = Date.now();
try {
  const bea = await person("bea", { viewport: { width: 390, height: 760 }, isMobile: true, hasTouch: true });
  await bea.goto(`${node2}/#/room/${room}`);
  await signIn(bea, "Bea");
  const beaJoined = await eventually(
    "Bea, on node 2, is online in the room of the URL",
    () => seen(bea),
    (s) => s.state === "online" && s.me.startsWith("anon-") && s.online.length === 1,
  );
  const beaId = beaJoined.me;

  const ann = await person("ann", { viewport: { width: 1100, height: 720 } });
  await ann.goto(`${node1}/#/room/${room}`);
  await signIn(ann, "Ann");
  const annJoined = await eventually(
    "Ann, on node 1, is online and sees both in the online list",
    () => seen(ann),
    (s) => s.state === "online" && s.me.startsWith("anon-") && s.online.length === 2,
  );
  const annId = annJoined.me;
  check("Ann and Bea are different chatters", annId !== beaId, [annId, beaId]);
  check("Ann's list is Ann and Bea", annJoined.online.join() === [annId, beaId].sort().join(), annJoined.online);
  await eventually(
    "Bea is told Ann joined, and her online list follows",
    () => seen(bea),
    (s) =>
      s.notices.length === 1 &&
      s.notices[0].kind === "join" &&
      s.notices[0].user === annId &&
      s.online.join() === [annId, beaId].sort().join() &&
      s.onlineCount === "2",
  );

  await say(ann, "hello from node 1");
  await eventually(
    "Bea receives Ann's message across nodes",
    () => seen(bea),
    (s) => s.messages.some((m) => m.from === "Ann" && m.text === "hello from node 1"),
  );
  await say(bea, "hi from node 2");
  await eventually(
    "Ann receives Bea's answer across nodes",
    () => seen(ann),
    (s) => s.messages.some((m) => m.from === "Bea" && m.text === "hi from node 2"),
  );
  check("Ann's input is cleared after sending", (await seen(ann)).input === "");

  const refreshed = Date.now();
  await ann.reload();
  const reloaded = await eventually(
    "after a refresh Ann is the same chatter, back online, with the history",
    () => seen(ann),
    (s) => s.state === "online" && s.online.length === 2 && s.messages.length === 2,
  );
  console.log(`     back in ${Date.now() - refreshed} ms (the grace is ${GRACE_MS} ms)`);
  check("Ann keeps her chatter id across the refresh", reloaded.me === annId, [reloaded.me, annId]);
  check(
    "the history is in order, each message once",
    reloaded.messages.map((m) => m.text).join("|") === "hello from node 1|hi from node 2",
    reloaded.messages,
  );
  await sleep(GRACE_MS + 1000);
  const calm = await seen(bea);
  check("Bea saw no leave or join notice for the refresh", calm.notices.length === 1, calm.notices);
  check("Bea's online list still has both", calm.online.join() === [annId, beaId].sort().join(), calm.online);

  await say(ann, "x".repeat(MAX_LEN + 1));
  const refused = await eventually(
    "an oversized message shows an error to Ann",
    () => seen(ann),
    (s) => s.error?.code === "too_long",
  );
  check("the error says the message is too long", /too long/i.test(refused.error?.text ?? ""), refused.error);
  check("the refused text stays in Ann's input", refused.input.length === MAX_LEN + 1);
  check("the refused message reached nobody", (await seen(bea)).messages.length === 2);
  await screenshot(ann, "ann-final");

  const closed = Date.now();
  await ann.close();
  const left = await eventually(
    "Bea is told Ann left",
    () => seen(bea),
    (s) => s.notices.length === 2,
    GRACE_MS + WAIT_MS,
  );
  const after = Date.now() - closed;
  check("the leave notice is Ann's", left.notices[1].kind === "leave" && left.notices[1].user === annId, left.notices);
  check(`it came after the grace period (${after} ms ≥ ${GRACE_MS} ms)`, after >= GRACE_MS - 100);
  await eventually(
    "Bea's online list drops Ann",
    () => seen(bea),
    (s) => s.online.join() === beaId && s.onlineCount === "1",
  );
  await sleep(1000);
  check("exactly one leave notice", (await seen(bea)).notices.filter((n) => n.kind === "leave").length === 1);

  await say(bea, "y".repeat(MAX_LEN + 5));
  await eventually(
    "an oversized message shows an error to Bea on a phone-sized screen",
    () => seen(bea),
    (s) => s.error?.code === "too_long" && /too long/i.test(s.error.text ?? ""),
  );
  check("Bea's error is visible", await bea.getByTestId("error").isVisible());

  // A page written for a Node server loads the client the server serves (SERVE_CLIENT) and chats
  // with plain socket.io-client calls, as post 004's room.html does.
  const plain = await person("plain", { viewport: { width: 800, height: 600 } });
  await plain.goto(`${node2}/healthz`);
  await plain.addScriptTag({ url: `${node2}/socket.io/socket.io.js` });
  const chatted = await plain.evaluate(async () => {
    // @ts-ignore -- the global `io` comes from the served bundle
    const socket = io({ auth: { userId: "plain", name: "Plain" } });
    await new Promise((resolve) => socket.on("connect", resolve));
    const joined = await socket.emitWithAck("join", { room: "plain" });
    const heard = new Promise((resolve) => socket.on("message", resolve));
    const sent = await socket.emitWithAck("message", { room: "plain", text: "from the served client" });
    const echo = await heard;
    socket.disconnect();
    return { joined: joined.ok, sent: sent.ok, echo };
  });
  check(
    "a page using the served /socket.io/socket.io.js joins, sends and hears its message",
    chatted.joined && chatted.sent && chatted.echo?.text === "from the served client" && chatted.echo?.seq === 1,
    chatted,
  );
  check("no page error", pageErrors.length === 0, pageErrors);
  check("no request left this machine", offsite.length === 0, offsite);
  await screenshot(bea, "bea-final");
} catch (err) {
  await failed(browser, err);
}
await passed(browser, watchdog, started);
