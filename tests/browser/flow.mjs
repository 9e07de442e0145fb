// The web client in Debian's headless Chromium (driven by playwright-core,
// never a downloaded browser), beside a TCP client, against a real parleyd.
// Usage: node flow.mjs WEB_URL TCP_HOST:PORT SCREENSHOT_FILE
// Finds the page's parts by role and accessible name (design.md §8).

import { chromium } from "playwright-core";
import net from "node:net";
import crypto from "node:crypto";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

const [webUrl, tcpAddr, screenshot] = process.argv.slice(2);
const sha = (s) => crypto.createHash("sha256").update(s).digest("hex");
const step = (what) => console.log("step:", what);

/** A Parley client over TCP: newline-delimited JSON, and raw file bytes. */
class Tcp {
  constructor(addr) {
    const [host, port] = addr.split(":");
    this.socket = net.connect(Number(port), host);
    this.buffer = Buffer.alloc(0);
    this.waiters = new Map();
    this.pushes = [];
    this.pushWaiters = [];
    this.raw = null;
    this.nextId = 1;
    this.socket.on("data", (chunk) => this.take(chunk));
  }
  take(chunk) {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    for (;;) {
      if (this.raw) {
        const n = Math.min(this.raw.left, this.buffer.length);
        this.raw.parts.push(this.buffer.subarray(0, n));
        this.buffer = this.buffer.subarray(n);
        this.raw.left -= n;
        if (this.raw.left === 0) {
          const done = this.raw;
          this.raw = null;
          done.resolve(Buffer.concat(done.parts));
        } else return;
      }
      const end = this.buffer.indexOf(10);
      if (end < 0) return;
      const line = this.buffer.subarray(0, end).toString();
      this.buffer = this.buffer.subarray(end + 1);
      const msg = JSON.parse(line);
      const waiter = this.waiters.get(msg.req_id);
      if (waiter) {
        this.waiters.delete(msg.req_id);
        waiter(msg);
      } else {
        this.pushes.push(msg);
        this.pushWaiters.splice(0).forEach((w) => w());
      }
    }
  }
  request(msg) {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiters.set(id, resolve);
      this.socket.write(JSON.stringify({ ...msg, req_id: id }) + "\n");
    });
  }
  async push(predicate, what) {
    const deadline = Date.now() + 15000;
    for (;;) {
      const i = this.pushes.findIndex(predicate);
      if (i >= 0) return this.pushes.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error("no push: " + what + "; got " + JSON.stringify(this.pushes));
      await new Promise((r) => {
        this.pushWaiters.push(r);
        setTimeout(r, 200);
      });
    }
  }
  async download(roomId, msgId) {
    const offer = await this.request({ type: "RQ_DOWNLOAD_FILE", room_id: roomId, msg_id: msgId });
    assert.equal(offer.type, "RQ_DOWNLOAD_FILE", JSON.stringify(offer));
    const bytes = new Promise((resolve) => {
      this.raw = { left: offer.size, parts: [], resolve };
    });
    this.socket.write(JSON.stringify({ type: "RQ_READY_READ" }) + "\n");
    return bytes;
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});

async function signUp(page, login, password) {
  await page.goto(webUrl);
  await page.getByLabel("Login").fill(login);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign up" }).click();
  await page.getByRole("button", { name: "Log out" }).waitFor();
}

const roomItem = (page, name) => page.getByRole("list", { name: "Rooms" }).getByRole("button", { name: new RegExp("#" + name) });
const messages = (page) => page.getByRole("log", { name: "Messages" });

async function say(page, text) {
  await page.getByRole("textbox", { name: "Message" }).fill(text);
  await page.getByRole("button", { name: "Send", exact: true }).click();
  await messages(page).getByText(text).first().waitFor();
}

try {
  step("alice signs up and creates a room");
  const alice = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const a = await alice.newPage();
  a.on("pageerror", (e) => console.log("page error:", e.message));
  a.on("console", (m) => console.log("page console:", m.text()));
  await signUp(a, "alice", "alice-password");
  await a.getByRole("button", { name: "New room" }).click();
  await a.getByLabel("Room name").fill("lobby");
  await a.getByRole("button", { name: "Create" }).click();
  await roomItem(a, "lobby").waitFor();
  await a.getByRole("heading", { name: "#lobby" }).waitFor();

  step("a TCP client joins, and they talk both ways");
  const bob = new Tcp(tcpAddr);
  const signed = await bob.request({ type: "RQ_SIGN_UP", login: "bob", pass: sha("bob-password") });
  assert.equal(signed.type, "RQ_TOKEN");
  const found = await bob.request({ type: "RQ_SEARCH_CH", name: "lobby" });
  const lobby = found.rooms[0].id;
  await bob.request({ type: "RQ_JOIN_ROOM", room_id: lobby });
  await say(a, "hello bob, from the browser");
  const heard = await bob.push((m) => m.type === "RQ_MSG" && m.login === "alice", "alice's message");
  assert.equal(heard.message, "hello bob, from the browser");
  await bob.request({ type: "RQ_MSG", room_id: lobby, message: "hi alice, from the terminal <b>not bold</b>" });
  await messages(a).getByText("hi alice, from the terminal <b>not bold</b>").waitFor();
  assert.equal(await messages(a).locator("b").count(), 0, "text from users is never HTML");

  step("a reload keeps the session");
  await a.reload();
  await roomItem(a, "lobby").waitFor();
  await messages(a).getByText("hi alice, from the terminal").waitFor();

  step("a second browser user finds the room and joins it");
  const carol = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  const c = await carol.newPage();
  await signUp(c, "carol", "carol-password");
  await c.getByRole("button", { name: "Find rooms" }).click();
  await c.getByLabel("Search rooms").fill("lob");
  await c.getByRole("button", { name: "Join" }).click();
  await messages(c).getByText("hello bob, from the browser").waitFor();
  await say(c, "carol is here");
  await messages(a).getByText("carol is here").waitFor();

  step("unread counts: alice elsewhere, two messages, then read");
  await a.getByRole("button", { name: "New room" }).click();
  await a.getByLabel("Room name").fill("quiet");
  await a.getByRole("button", { name: "Create" }).click();
  await a.getByRole("heading", { name: "#quiet" }).waitFor();
  await bob.request({ type: "RQ_MSG", room_id: lobby, message: "one while you were away" });
  await bob.request({ type: "RQ_MSG", room_id: lobby, message: "two while you were away" });
  await roomItem(a, "lobby").filter({ hasText: "2" }).waitFor();
  await roomItem(a, "lobby").click();
  await messages(a).getByText("new since last read").waitFor();
  await messages(a).getByText("two while you were away").waitFor();
  await a.waitForFunction(() => !document.querySelector("#rooms .unread"));

  step("a file goes up from the page and down to the TCP client byte-identical");
  const bytes = crypto.randomBytes(300 * 1024);
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "parley-")), "report.bin");
  fs.writeFileSync(file, bytes);
  await a.locator("#file").setInputFiles(file);
  await a.getByText("Uploaded report.bin").waitFor();
  const fileMsg = await bob.push((m) => m.type === "RQ_MSG" && m.msg_type === "DB_FILE_MSG", "the file message");
  assert.equal(fileMsg.file_name, "report.bin");
  const got = await bob.download(lobby, fileMsg.message_id);
  assert.ok(got.equals(bytes), "byte-identical over TCP");
  const [download] = await Promise.all([
    a.waitForEvent("download"),
    messages(a).getByRole("button", { name: "Download report.bin" }).click(),
  ]);
  const saved = fs.readFileSync(await download.path());
  assert.ok(saved.equals(bytes), "byte-identical in the browser");

  step("a phone-sized window");
  const phone = await browser.newContext({ viewport: { width: 390, height: 700 }, isMobile: true, hasTouch: true });
  const p = await phone.newPage();
  await p.goto(webUrl);
  await p.getByLabel("Login").fill("carol");
  await p.getByLabel("Password").fill("carol-password");
  await p.getByRole("button", { name: "Log in" }).click();
  await messages(p).getByText("carol is here").waitFor();
  const wide = await p.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 390, `no sideways scrolling (width ${wide})`);
  assert.equal(await p.getByRole("list", { name: "Rooms" }).isVisible(), false, "rooms behind a button");
  await p.getByRole("button", { name: "Rooms" }).click();
  await roomItem(p, "lobby").click();
  await say(p, "from a phone");
  await messages(a).getByText("from a phone").waitFor();

  step("keyboard alone: send with Enter");
  await a.getByRole("textbox", { name: "Message" }).focus();
  await a.keyboard.type("typed, not clicked");
  await a.keyboard.press("Enter");
  await bob.push((m) => m.type === "RQ_MSG" && m.message === "typed, not clicked", "the typed message");

  step("mentions, replies, reactions, typing and pins");
  const asked = await bob.request({ type: "RQ_MSG", room_id: lobby, message: "lunch @alice?" });
  const askedEl = messages(a).locator(`.msg[data-id="${asked.message_id}"]`);
  await askedEl.getByText("(mentions you)").waitFor({ state: "attached" });
  assert.ok(await askedEl.evaluate((el) => el.classList.contains("mention")), "the mention is marked");
  await askedEl.getByRole("button", { name: "Reply to bob" }).click();
  await a.getByText("Replying to bob: lunch @alice?").waitFor();
  await a.getByRole("textbox", { name: "Message" }).fill("yes, at noon");
  await a.keyboard.press("Enter");
  const answer = await bob.push((m) => m.type === "RQ_MSG" && m.message === "yes, at noon", "the reply");
  assert.equal(answer.reply_to, asked.message_id);
  await messages(a).getByText("↪ bob: lunch @alice?").waitFor();
  await bob.request({ type: "RQ_REACT", room_id: lobby, msg_id: answer.message_id, emoji: "👍", on: true });
  await messages(a).getByRole("button", { name: "👍 1" }).waitFor();
  await askedEl.getByRole("button", { name: "React" }).click();
  await askedEl.getByRole("button", { name: "React with 🎉" }).click();
  const reacted = await bob.push((m) => m.type === "RQ_REACT" && m.login === "alice", "alice's reaction");
  assert.equal(reacted.emoji, "🎉");
  await askedEl.getByRole("button", { name: "🎉 1, yours" }).waitFor();
  await bob.request({ type: "RQ_TYPING", room_id: lobby });
  await a.getByText("bob is typing…").waitFor();
  await new Promise((r) => setTimeout(r, 3100));
  await a.getByRole("textbox", { name: "Message" }).pressSequentially("so");
  const typing = await bob.push((m) => m.type === "RQ_TYPING" && m.login === "alice", "alice typing");
  assert.equal(typing.room_id, lobby);
  await a.getByRole("textbox", { name: "Message" }).fill("");
  await askedEl.getByRole("button", { name: "Pin" }).click();
  const pinned = await bob.push((m) => m.type === "RQ_PIN", "the pin");
  assert.equal(pinned.msg_id, asked.message_id);
  await a.getByRole("button", { name: "Pinned" }).click();
  await a.getByRole("heading", { name: "Pinned" }).waitFor();
  await a.locator("#results").getByText("lunch @alice?").waitFor();
  await a.getByRole("button", { name: "Mentions" }).click();
  await a.getByRole("heading", { name: "Mentions" }).waitFor();
  await a.locator("#results").getByText("lunch @alice?").waitFor();
  await a.getByRole("button", { name: "Close results" }).click();

  step("screenshot");
  await a.screenshot({ path: screenshot });

  step("log out revokes the session");
  const token = await a.evaluate(() => localStorage.getItem("parley.token"));
  await a.getByRole("button", { name: "Log out" }).click();
  await a.getByRole("button", { name: "Log in" }).waitFor();
  const again = new Tcp(tcpAddr);
  const resumed = await again.request({ type: "RQ_TOKEN", token });
  assert.equal(resumed.type, "RQ_ERROR_MSG", "the token no longer works");
  again.socket.destroy();
  bob.socket.destroy();
  console.log("browser flow: all steps passed");
} catch (e) {
  console.error("browser flow failed:", e);
  for (const context of browser.contexts()) {
    for (const [i, page] of context.pages().entries()) {
      await page.screenshot({ path: path.join(os.tmpdir(), `parley-browser-failure-${i}.png`) }).catch(() => {});
    }
  }
  process.exitCode = 1;
} finally {
  await browser.close().catch(() => {});
  // Open sockets would keep node alive.
  process.exit(process.exitCode ?? 0);
}
