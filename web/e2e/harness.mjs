// What the browser tests share: their command line (two nodes on this machine and a folder for
// screenshots), checks that count and stop at the first failure, and Chromium launched the way
// this machine and CI can run it.

import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { chromium } from "playwright-core";

/** How long a check waits for the page to get there, unless it says otherwise. */
export const WAIT_MS = 10_000;

/** Checks that passed so far. */
export const tally = { passed: 0 };

/** Errors thrown in any watched page. @type {string[]} */
export const pageErrors = [];

/** Every watched page, by person. @type {Map<string, import("playwright-core").Page>} */
export const pages = new Map();

/** Where screenshots go: the command line's ARTIFACTS_DIR. */
let artifactsDir = ".";

/**
 * The nodes' URLs and the artifacts folder from the command line; exits unless both nodes are on
 * 127.0.0.1, since these tests only ever talk to servers on this machine.
 * @param {string} script
 * @returns {[string, string, string]}
 */
export function commandLine(script) {
  const [node1, node2, artifacts] = process.argv.slice(2);
  if (!node1 || !node2 || !artifacts) {
    console.error(`usage: ${script} NODE1_URL NODE2_URL ARTIFACTS_DIR`);
    process.exit(2);
  }
  for (const url of [node1, node2]) {
    if (new URL(url).hostname !== "127.0.0.1") {
      console.error(`refusing ${url}: the nodes must be on 127.0.0.1`);
      process.exit(2);
    }
  }
  artifactsDir = artifacts;
  return [node1, node2, artifacts];
}

/**
 * Keeps `page` as `who`'s, recording its errors and echoing its console errors.
 * @param {string} who
 * @param {import("playwright-core").Page} page
 */
export function watch(who, page) {
  page.on("pageerror", (err) => pageErrors.push(`${who}: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") console.log(`     (${who} console) ${msg.text()}`);
  });
  pages.set(who, page);
  return page;
}

/** @param {import("playwright-core").Page} page @param {string} name */
export async function signIn(page, name) {
  await page.getByTestId("name-input").fill(name);
  await page.getByTestId("name-submit").click();
}

/** Types and sends a message through the page, as a person would. @param {import("playwright-core").Page} page @param {string} text */
export async function say(page, text) {
  await page.getByTestId("message-input").fill(text);
  await page.getByTestId("message-send").click();
}

/** Saves a full-page screenshot as `{name}.png` in the artifacts folder. @param {import("playwright-core").Page} page @param {string} name */
export async function screenshot(page, name) {
  await mkdir(artifactsDir, { recursive: true });
  const path = join(artifactsDir, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`     screenshot ${path}`);
}

/** @param {string} what @param {boolean} condition @param {unknown} [detail] */
export function check(what, condition, detail) {
  if (!condition) throw new Error(`${what}${detail === undefined ? "" : `: ${JSON.stringify(detail)}`}`);
  tally.passed += 1;
  console.log(`ok   ${what}`);
}

/** @param {number} ms */
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls `probe` until `accept` takes what it returns, for `timeoutMs` at most.
 * @template T
 * @param {string} what
 * @param {() => Promise<T>} probe
 * @param {(value: T) => boolean} accept
 * @param {number} [timeoutMs]
 * @returns {Promise<T>}
 */
export async function eventually(what, probe, accept, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (accept(value)) {
      check(what, true);
      return value;
    }
    if (Date.now() > deadline) check(`${what} (within ${timeoutMs} ms)`, false, value);
    await sleep(50);
  }
}

/** Headless Chromium (CHROMIUM, default Debian's) with a fresh profile of its own. */
export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    // Playwright gives the browser a fresh profile in a temporary directory of its own.
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-quic",
    ],
  });
}

/**
 * Fails the test if it runs longer than `ms`; `passed` stops the clock.
 * @param {number} ms
 */
export function deadline(ms) {
  return setTimeout(() => {
    console.error(`FAIL the test did not finish within ${ms} ms`);
    process.exit(1);
  }, ms);
}

/**
 * Reports `err`, saves a screenshot of every open page as `{prefix}{who}-failure.png`, closes the
 * browser and exits non-zero.
 * @param {import("playwright-core").Browser} browser
 * @param {unknown} err
 * @param {string} [prefix]
 */
export async function failed(browser, err, prefix = "") {
  console.log(`FAIL ${err instanceof Error ? err.message : err}`);
  for (const [who, page] of pages) {
    if (!page.isClosed()) await screenshot(page, `${prefix}${who}-failure`).catch((e) => console.log(`     no screenshot: ${e}`));
  }
  await browser.close();
  console.log(`browser: ${tally.passed} passed, 1 failed`);
  process.exit(1);
}

/**
 * Every check passed: stops the `deadline` clock, closes the browser and says how long it took.
 * @param {import("playwright-core").Browser} browser
 * @param {ReturnType<typeof deadline>} clock
 * @param {number} started
 */
export async function passed(browser, clock, started) {
  clearTimeout(clock);
  await browser.close();
  console.log(`     took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  console.log(`browser: ${tally.passed} passed, 0 failed`);
}
