// End-to-end test of the Socket.IO Admin UI served by the nodes, in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core): an operator opens the UI on node 1, logs in,
// sees the three nodes and the chat sockets of nodes 2 and 3, and disconnects Carol's socket; her
// chat page, on node 2, shows it was disconnected and comes back.
//
//   THIRD_NODE_URL=… ADMIN_UI_USERNAME=… ADMIN_UI_PASSWORD=… \
//     node e2e/admin-ui.e2e.mjs NODE1_URL NODE2_URL ARTIFACTS_DIR
//
// The nodes run the Admin UI in development mode (the Sockets page needs it). Exits non-zero at
// the first failed check.

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

const [node1, node2] = commandLine("admin-ui.e2e.mjs");
const node3 = process.env.THIRD_NODE_URL ?? "";
const username = process.env.ADMIN_UI_USERNAME ?? "";
const password = process.env.ADMIN_UI_PASSWORD ?? "";
if (new URL(node3).hostname !== "127.0.0.1" || !username || !password) {
  console.error("THIRD_NODE_URL (on 127.0.0.1), ADMIN_UI_USERNAME and ADMIN_UI_PASSWORD are needed");
  process.exit(2);
}
const NODE_NAMES = ["web-node-1", "web-node-2", "web-node-3"];
const DEADLINE_MS = 90_000;

const browser = await launch();
const watchdog = deadline(DEADLINE_MS);

/** What the Admin UI's main area says. @param {import("playwright-core").Page} page */
const mainText = (page) => page.evaluate(() => document.querySelector("main")?.innerText ?? "");

const started = Date.now();
try {
  // Carol chats on node 2; every state her page shows is recorded, with its detail.
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const carol = watch("carol", await context.newPage());
  await carol.goto(`${node2}/#/room/ops`);
  await signIn(carol, "Carol");
  await eventually(
    "Carol, on node 2, is online in the room",
    () => carol.evaluate(() => document.querySelector('[data-testid="connection"]')?.dataset.state),
    (state) => state === "online",
  );
  await carol.evaluate(() => {
    const badge = /** @type {HTMLElement} */ (document.querySelector('[data-testid="connection"]'));
    const states = /** @type {string[]} */ ([]);
    Object.assign(window, { states });
    new MutationObserver(() => states.push(`${badge.dataset.state}: ${badge.title}`)).observe(badge, {
      attributes: true,
      childList: true,
    });
  });

  // Dave is a script on node 3.
  const dave = io(node3, { auth: { name: "Dave" }, transports: ["websocket"] });
  await new Promise((resolve) => dave.on("connect", resolve));
  check("Dave is connected to node 3", dave.connected);

  const operatorContext = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const operator = watch("operator", await operatorContext.newPage());
  await operator.goto(`${node1}/admin-ui/`);
  await operator.getByLabel("Server URL").fill(node1);
  await operator.getByLabel("Username").fill(username);
  await operator.getByLabel("Password").fill(password);
  await operator.getByRole("button", { name: "Connect" }).click();
  await eventually(
    "the operator is logged in to node 1",
    () => operator.evaluate(() => document.querySelector("header")?.innerText ?? ""),
    (text) => text.includes("CONNECTED") && !text.includes("DISCONNECTED"),
  );
  check(
    "the UI kept its session (sessionId in its storage)",
    /^[0-9a-f]{32}$/.test((await operator.evaluate(() => localStorage.getItem("session_id"))) ?? ""),
  );

  await operator.goto(`${node1}/admin-ui/#/servers/`);
  await eventually(
    "the Servers page lists the three nodes, each healthy",
    () => mainText(operator),
    (text) => NODE_NAMES.every((n) => text.includes(n)) && text.split("HEALTHY").length - 1 === 3,
  );
  await screenshot(operator, "admin-ui-servers");

  await operator.goto(`${node1}/admin-ui/#/sockets/`);
  const sockets = await eventually(
    "the Sockets page lists Dave's socket (node 3) and one more (Carol's, node 2)",
    () => mainText(operator),
    (text) => text.includes(dave.id ?? "?") && /1-2 of 2/.test(text),
  );
  await screenshot(operator, "admin-ui-sockets");
  const carolId = sockets
    .split(/\s+/)
    .find((word) => /^[\w-]{16}$/.test(word) && word !== dave.id);
  check("Carol's socket id is on the page", carolId !== undefined, sockets);

  await operator.getByText(/** @type {string} */ (carolId), { exact: true }).first().click();
  await eventually(
    "Carol's socket page shows her data and her node's handshake",
    () => mainText(operator),
    (text) => text.includes('"name": "Carol"') && text.includes("Initial HTTP request"),
  );
  await screenshot(operator, "admin-ui-socket");
  // The socket's own disconnect button (the client's is the first): `_disconnect(nsp, false, id)`.
  await operator.locator("main button:has(i.mdi-logout)").nth(1).click();

  const states = await eventually(
    "Carol's page shows the server disconnected her, then it comes back online",
    () => carol.evaluate(() => /** @type {string[]} */ (/** @type {any} */ (window).states)),
    (s) => s.some((x) => x.includes("io server disconnect")) && s.at(-1)?.startsWith("online"),
  );
  console.log(`     Carol's page: ${states.join(" → ")}`);
  check("Dave, on another node, stayed connected", dave.connected);
  dave.disconnect();
  check("no page errors", pageErrors.length === 0, pageErrors);
  await passed(browser, watchdog, started);
} catch (err) {
  await failed(browser, err, "admin-ui-");
}
