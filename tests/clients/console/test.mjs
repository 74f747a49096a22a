// The web console (`/`, console/ in the source tree) in Debian's headless Chromium, driven by
// playwright-core: two pages as two users mint their tokens in the console, one creates a room
// with the other, and they exchange, edit and delete messages, each watching the other's events
// arrive in its log and its room view; then the second page listens on osu!, Rechat and BIG.
// Screenshots: target/console-a.png, target/console-b.png, target/console-health.png.
//
//   ROOMCAST_URL=http://127.0.0.1:PORT node --test tests/clients/console/
//
// The server runs with --console-mint; without it, set ROOMCAST_BIN and ROOMCAST_DATA_DIR and
// the tokens are made with `roomcast token` and pasted instead. CHROMIUM overrides
// /usr/bin/chromium.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const URL = process.env.ROOMCAST_URL ?? "http://127.0.0.1:18081";
const SHOTS = fileURLToPath(new globalThis.URL("../../../target/", import.meta.url));
const RUN = Math.random().toString(36).slice(2, 8);
const WAIT_MS = 10_000;

// As the machine's notes say: no sandbox as root, and no background connections to the
// (closed) network.
const LAUNCH = {
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
};

// One user's page: the console opened, the user signed in, the Virola socket open.
async function open(browser, user) {
  const context = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(m.text());
  });
  const response = await page.goto(URL + "/");
  assert.match(response.headers()["content-type"], /^text\/html/);
  assert.match(response.headers()["content-security-policy"], /script-src 'self'/);
  await page.locator("body[data-ready=true]").waitFor();
  if (await page.locator("#mint-form").isVisible()) {
    await page.fill("#mint-user", user);
    await page.click("#mint");
  } else {
    const { ROOMCAST_BIN: bin, ROOMCAST_DATA_DIR: dir } = process.env;
    assert.ok(bin && dir, "the server mints no tokens: set ROOMCAST_BIN and ROOMCAST_DATA_DIR");
    const token = execFileSync(bin, ["token", "--user", user, "--data-dir", dir], { encoding: "utf8" });
    await page.fill("#token", token.trim());
    await page.locator("#token").dispatchEvent("change");
  }
  await page.locator("#whoami", { hasText: user }).waitFor();
  await page.click("#connect");
  await page.locator("#socket-status", { hasText: "open (virola)" }).waitFor();
  return { page, context, problems };
}

// Waits for an incoming frame in the page's log that contains every one of `texts`.
async function logged(page, ...texts) {
  let entries = page.locator("#log li.in");
  for (const text of texts) entries = entries.filter({ hasText: text });
  await entries.first().waitFor();
}

const message = (page, text) => page.locator("#messages .message .text", { hasText: text });

test("two users in two browser pages see each other's messages and events", async () => {
  mkdirSync(SHOTS, { recursive: true });
  const browser = await chromium.launch(LAUNCH);
  try {
    const alice = `console-alice-${RUN}`;
    const bob = `console-bob-${RUN}`;
    const a = await open(browser, alice);
    const b = await open(browser, bob);

    // A creates a room with B (and adds a third member); B's socket hears of the room.
    const name = `console-${RUN}`;
    await a.page.fill("#room-name", name);
    await a.page.fill("#room-members", bob);
    await a.page.click("#create-room button");
    await a.page.locator("#room-title", { hasText: name }).waitFor();
    await a.page.fill("#member-user", `console-carol-${RUN}`);
    await a.page.click("#add-member");
    await a.page.locator("#room-members-list", { hasText: `console-carol-${RUN}` }).waitFor();
    await logged(b.page, "RoomCreated", name);
    await b.page.locator("#rooms button", { hasText: name }).click();
    await b.page.locator("#room-title", { hasText: name }).waitFor();

    // A posts; B sees the event and the message. B replies; A sees both.
    await a.page.fill("#message-text", "hello from alice");
    await a.page.click("#post");
    await logged(b.page, "TextMessagesCreated", "hello from alice");
    await message(b.page, "hello from alice").waitFor();
    await b.page.fill("#message-text", "hi alice, bob here");
    await b.page.click("#post");
    await logged(a.page, "TextMessagesCreated", "hi alice, bob here");
    await message(a.page, "hi alice, bob here").waitFor();

    // A edits its message and B sees the edit; B deletes its reply and A sees it go.
    const mine = a.page.locator("#messages .message", { hasText: "hello from alice" });
    await mine.locator("button.edit").click();
    await a.page.fill("#messages .edit-text", "hello from alice, edited");
    await a.page.locator("#messages .edit-form button[type=submit]").click();
    await logged(b.page, "TextMessagesUpdated", "hello from alice, edited");
    await message(b.page, "hello from alice, edited").waitFor();
    await b.page.locator("#messages .message", { hasText: "hi alice, bob here" }).locator("button.delete").click();
    await logged(a.page, "TextMessageDeleted");
    await message(a.page, "hi alice, bob here").waitFor({ state: "detached" });
    await a.page.fill("#message-text", "still here?");
    await a.page.click("#post");
    await message(b.page, "still here?").waitFor();

    await a.page.screenshot({ path: SHOTS + "console-a.png", fullPage: true });
    await b.page.screenshot({ path: SHOTS + "console-b.png", fullPage: true });

    // B listens on the other dialects, as raw frames, while A posts.
    const listen = async (dialect) => {
      await b.page.click("#connect"); // disconnect
      await b.page.selectOption("#dialect", dialect);
      await b.page.click("#connect");
    };
    await listen("osu");
    await logged(b.page, "connection.ready");
    await a.page.fill("#message-text", "to osu");
    await a.page.click("#post");
    await logged(b.page, "chat.message.new", "to osu");
    await listen("rechat");
    await logged(b.page, `431[null`, bob); // Authenticate acknowledged with the user
    await a.page.fill("#message-text", "to rechat");
    await a.page.click("#post");
    await logged(b.page, `42["Message.Sent"`, "to rechat");
    // BIG from a browser: `?access_token=` (a browser cannot send the Authorization header).
    await listen("big");
    await b.page.locator("#socket-status", { hasText: "open (big)" }).waitFor();
    await a.page.fill("#message-text", "to big");
    await a.page.click("#post");
    await logged(b.page, '"eventType":"new"', "to big");

    // The health page: one column per shard, the connection gauges among the rows.
    await a.page.click("#tab-health");
    await a.page.locator("#health", { hasText: '"status": "ok"' }).waitFor();
    await a.page.locator("#metrics th", { hasText: "shard 0" }).waitFor();
    await a.page.locator("#metrics td", { hasText: /^websockets$/ }).waitFor();
    await a.page.screenshot({ path: SHOTS + "console-health.png", fullPage: true });

    assert.deepEqual(a.problems, []);
    assert.deepEqual(b.problems, []);
  } finally {
    await browser.close();
  }
});
