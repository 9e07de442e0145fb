// Parley's web client: one WebSocket to the server that served this page,
// speaking the protocol of protocol.md (name dialect, one object per frame).
// Text from users is only ever set as textContent, never parsed as HTML.

import { sha256Hex } from "./sha256.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "parley.token";
const ROOM_KEY = "parley.room";
const PAGE = 50;

const state = {
  ws: null,
  open: false,
  nextId: 1,
  waiting: new Map(),
  token: localStorage.getItem(TOKEN_KEY),
  me: null,
  rooms: new Map(),
  current: null,
  oldest: null,
  newest: null,
  complete: false,
  loadingOlder: false,
  retry: 0,
  markTimer: null,
  friends: new Map(),
  // Conversation features: what the user answers, the reactions seen, who
  // types, the current room's members (for @ completion).
  replyTo: null,
  reactions: new Map(),
  mine: new Map(),
  typingTimer: null,
  typingSent: 0,
  members: [],
};

const EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢"];

// --- The connection -------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/ws");
  state.ws = ws;
  setConnection("connecting…");
  ws.onopen = async () => {
    state.open = true;
    state.retry = 0;
    setConnection("");
    if (state.token) {
      const resumed = await request({ type: "RQ_TOKEN", token: state.token }).catch(() => null);
      if (resumed && resumed.type === "RQ_TOKEN") {
        await enterChat(resumed);
      } else if (resumed) {
        forgetSession();
        showWelcome("Your session has ended; please log in again.");
      }
    } else {
      showWelcome("");
    }
  };
  ws.onmessage = (event) => {
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    const waiter = msg.req_id !== undefined && state.waiting.get(msg.req_id);
    if (waiter) {
      state.waiting.delete(msg.req_id);
      waiter(msg);
    } else {
      onPush(msg);
    }
  };
  ws.onclose = () => {
    state.open = false;
    for (const waiter of state.waiting.values()) waiter({ type: "RQ_ERROR_MSG", msg: "connection lost" });
    state.waiting.clear();
    const wait = Math.min(30, 2 ** state.retry);
    state.retry += 1;
    setConnection(`connection lost; reconnecting in ${wait} s`);
    setTimeout(connect, wait * 1000);
  };
}

function setConnection(text) {
  $("connection").textContent = text;
}

/** Sends a request; resolves with its answer (an RQ_ERROR_MSG included). */
function request(msg) {
  return new Promise((resolve, reject) => {
    if (!state.open) {
      reject(new Error("not connected"));
      return;
    }
    const id = state.nextId++;
    state.waiting.set(id, resolve);
    state.ws.send(JSON.stringify({ ...msg, req_id: id }));
    setTimeout(() => {
      if (state.waiting.delete(id)) resolve({ type: "RQ_ERROR_MSG", msg: "no answer from the server" });
    }, 30000);
  });
}

/** A request whose refusal is an exception with the server's reason. */
async function ask(msg) {
  const reply = await request(msg);
  if (reply.type === "RQ_ERROR_MSG") throw new Error(reply.msg || "refused");
  return reply;
}

async function passwordDigest(password) {
  const bytes = new TextEncoder().encode(password);
  if (globalThis.crypto && crypto.subtle) {
    const digest = await crypto.subtle.digest("SHA-256", bytes);
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }
  return sha256Hex(bytes);
}

// --- Signing up and logging in --------------------------------------------

function showWelcome(status) {
  $("chat").hidden = true;
  $("welcome").hidden = false;
  $("auth-status").textContent = status;
}

function forgetSession() {
  state.token = null;
  localStorage.removeItem(TOKEN_KEY);
}

async function authenticate(kind) {
  const login = $("login").value.trim();
  const password = $("password").value;
  if (!login || !password) {
    $("auth-status").textContent = "Enter a login and a password.";
    return;
  }
  if (kind === "RQ_SIGN_UP" && password.length < 8) {
    $("auth-status").textContent = "A password needs at least 8 characters.";
    return;
  }
  $("auth-status").textContent = kind === "RQ_SIGN_UP" ? "Signing up…" : "Logging in…";
  try {
    const pass = await passwordDigest(password);
    const msg = kind === "RQ_SIGN_UP" ? { type: kind, login, pass, name: login, desc: "" } : { type: kind, login, pass };
    const reply = await ask(msg);
    $("password").value = "";
    await enterChat(reply);
  } catch (e) {
    $("auth-status").textContent = e.message;
  }
}

async function enterChat(tokenReply) {
  state.token = tokenReply.token;
  localStorage.setItem(TOKEN_KEY, state.token);
  state.me = { login: tokenReply.login, id: tokenReply.user_id };
  $("welcome").hidden = true;
  $("chat").hidden = false;
  $("me").textContent = state.me.login;
  await loadRooms();
  loadFriends();
  const wanted = Number(localStorage.getItem(ROOM_KEY));
  const room = state.current ?? (state.rooms.has(wanted) ? wanted : [...state.rooms.keys()][0]);
  if (room !== undefined && room !== null) {
    await openRoom(room);
  } else {
    renderRooms();
    $("room-title").textContent = "No rooms yet: create one or find one";
  }
}

async function logOut() {
  try {
    await ask({ type: "RQ_LOG_OUT", token: state.token });
  } catch {
    // Even offline the page forgets the session.
  }
  forgetSession();
  localStorage.removeItem(ROOM_KEY);
  state.rooms.clear();
  state.current = null;
  $("messages").replaceChildren();
  showWelcome("Logged out.");
}

// --- Rooms ----------------------------------------------------------------

function roomLabel(room) {
  return room.peer ? "@" + room.peer.login : "#" + room.name;
}

async function loadRooms() {
  const reply = await ask({ type: "RQ_GET_ROOMS", date: 0 });
  for (const room of reply.rooms) {
    const known = state.rooms.get(room.id);
    state.rooms.set(room.id, { ...known, ...room, unread: room.unread ?? 0 });
  }
  renderRooms();
}

function renderRooms() {
  const list = $("rooms");
  list.replaceChildren();
  for (const room of state.rooms.values()) {
    const item = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    const name = document.createElement("span");
    name.textContent = roomLabel(room);
    button.append(name);
    if (room.unread > 0) {
      const badge = document.createElement("span");
      badge.className = "unread";
      badge.textContent = String(room.unread);
      const words = document.createElement("span");
      words.className = "sr-only";
      words.textContent = " unread";
      badge.append(words);
      button.append(badge);
    }
    if (room.mentions > 0) {
      const badge = document.createElement("span");
      badge.className = "mention-count";
      badge.textContent = "@" + room.mentions;
      const words = document.createElement("span");
      words.className = "sr-only";
      words.textContent = room.mentions === 1 ? " mentions you" : " mention you";
      badge.append(words);
      button.append(badge);
    }
    if (room.id === state.current) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => {
      $("side").classList.remove("open");
      $("toggle-rooms").setAttribute("aria-expanded", "false");
      openRoom(room.id);
    });
    item.append(button);
    list.append(item);
  }
}

async function openRoom(id) {
  const room = state.rooms.get(id);
  if (!room) return;
  let reply;
  try {
    reply = await ask({ type: "RQ_GET_NEW_MSGS", room_id: id, count: PAGE });
  } catch (e) {
    notice(e.message);
    return;
  }
  state.current = id;
  localStorage.setItem(ROOM_KEY, String(id));
  $("room-title").textContent = roomLabel(room) + (room.desc ? " — " + room.desc : "");
  $("members-panel").hidden = true;
  $("show-members").setAttribute("aria-expanded", "false");
  const box = $("messages");
  box.replaceChildren();
  const msgs = reply.messages.slice().reverse();
  const firstNew = room.unread > 0 && room.unread <= msgs.length ? msgs.length - room.unread : -1;
  msgs.forEach((m, i) => {
    if (i === firstNew) {
      const line = document.createElement("div");
      line.className = "new-since";
      line.textContent = "new since last read";
      box.append(line);
    }
    box.append(messageElement(m));
  });
  state.oldest = msgs.length ? msgs[0].message_id : null;
  state.newest = msgs.length ? msgs[msgs.length - 1].message_id : null;
  state.complete = msgs.length < PAGE;
  if (msgs.length === 0) notice("No messages yet: say hello.", "empty");
  box.scrollTop = box.scrollHeight;
  room.unread = 0;
  room.mentions = 0;
  renderRooms();
  markRead();
  cancelReply();
  $("typing").textContent = "";
  ask({ type: "RQ_GET_MEMBERS", room_id: id })
    .then((r) => {
      if (state.current === id) state.members = r.members;
    })
    .catch(() => {});
}

async function loadOlder() {
  if (state.loadingOlder || state.complete || state.oldest === null || state.current === null) return;
  state.loadingOlder = true;
  const room = state.current;
  try {
    const reply = await ask({ type: "RQ_OLD_MSGS", room_id: room, before_id: state.oldest, count: PAGE });
    if (room !== state.current) return;
    const box = $("messages");
    const before = box.scrollHeight;
    const msgs = reply.messages.slice().reverse();
    box.prepend(...msgs.map(messageElement));
    if (msgs.length) state.oldest = msgs[0].message_id;
    state.complete = msgs.length < PAGE;
    box.scrollTop += box.scrollHeight - before;
  } catch (e) {
    notice(e.message);
  } finally {
    state.loadingOlder = false;
  }
}

function markRead() {
  clearTimeout(state.markTimer);
  state.markTimer = setTimeout(() => {
    if (state.current !== null && state.newest !== null && state.open) {
      request({ type: "RQ_MARK_READ", room_id: state.current, msg_id: state.newest }).catch(() => {});
    }
  }, 300);
}

// --- Messages -------------------------------------------------------------

function mentionsMe(text) {
  if (!state.me) return false;
  const re = new RegExp("@" + state.me.login.replace(/[.*+?^${}()|[\]\\]/g, "\\$&") + "(?![\\w])", "i");
  return re.test(text);
}

function messageElement(m) {
  const el = document.createElement("div");
  el.className = "msg";
  el.dataset.id = String(m.message_id);
  const mine = state.me && m.user_id === state.me.id;
  if (mine) el.classList.add("mine");
  const time = document.createElement("time");
  const date = new Date(m.date);
  time.dateTime = date.toISOString();
  time.textContent = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = m.login;
  const text = document.createElement("span");
  text.className = "text";
  if (m.reply_to) {
    const quote = document.createElement("span");
    quote.className = "quote";
    quote.textContent = m.reply_preview
      ? `↪ ${m.reply_preview.login}: ${m.reply_preview.message}`
      : "↪ (the original was deleted)";
    el.append(quote);
  }
  el.append(time, who, text);
  if (m.msg_type === "DB_FILE_MSG" || m.msg_type === "DB_FILE_TEXT_MSG") {
    text.textContent = `sent a file: ${m.file_name ?? m.message} (${formatSize(m.file_size ?? 0)}) `;
    const get = document.createElement("button");
    get.type = "button";
    get.className = "link";
    get.textContent = "Download";
    get.setAttribute("aria-label", "Download " + (m.file_name ?? m.message));
    get.addEventListener("click", () => download(m));
    text.append(get);
  } else {
    text.textContent = m.msg_type === "DB_STICKER" ? `[sticker ${m.message}]` : m.message;
    if (!mine && mentionsMe(m.message)) {
      el.classList.add("mention");
      const sr = document.createElement("span");
      sr.className = "sr-only";
      sr.textContent = " (mentions you)";
      el.append(sr);
    }
  }
  if (m.edited) el.append(editedMark());
  state.reactions.set(m.message_id, new Map((m.reactions ?? []).map((r) => [r.emoji, r.count])));
  if (m.my_reactions) state.mine.set(m.message_id, new Set(m.my_reactions));
  const reactions = document.createElement("span");
  reactions.className = "reactions";
  el.append(reactions);
  renderReactions(m.message_id, reactions);
  const tools = document.createElement("span");
  tools.className = "tools";
  const reply = toolButton("Reply", () => startReply(m));
  reply.setAttribute("aria-label", "Reply to " + m.login);
  const react = toolButton("React", () => togglePicker(el, m.message_id));
  react.setAttribute("aria-expanded", "false");
  react.className = "link react";
  tools.append(reply, react);
  if (mine && m.msg_type !== "DB_FILE_MSG") tools.append(toolButton("Edit", () => editMessage(m.message_id, text)));
  const room = state.rooms.get(m.room_id);
  const moderates = room && ["DB_CUSTOMER", "DB_ADMIN", "DB_MODERATOR"].includes(room.role);
  if (mine || moderates) tools.append(toolButton("Delete", () => deleteMessage(m.message_id)));
  if (moderates) tools.append(toolButton("Pin", () => pinMessage(m.message_id, true)));
  if (tools.childElementCount) el.append(tools);
  return el;
}

function editedMark() {
  const edited = document.createElement("span");
  edited.className = "edited";
  edited.textContent = " (edited)";
  return edited;
}

function renderReactions(msgId, span) {
  const target = span ?? findMessage(msgId)?.querySelector(".reactions");
  if (!target) return;
  target.replaceChildren();
  const counts = state.reactions.get(msgId) ?? new Map();
  const mine = state.mine.get(msgId) ?? new Set();
  for (const [emoji, count] of counts) {
    if (count <= 0) continue;
    const b = document.createElement("button");
    b.type = "button";
    b.className = "reaction";
    b.textContent = `${emoji} ${count}`;
    b.setAttribute("aria-pressed", String(mine.has(emoji)));
    b.setAttribute("aria-label", `${emoji} ${count}${mine.has(emoji) ? ", yours" : ""}`);
    b.addEventListener("click", () => react(msgId, emoji));
    target.append(b);
  }
}

async function react(msgId, emoji) {
  const mine = state.mine.get(msgId) ?? new Set();
  try {
    // The answer is the broadcast itself: applied like the others' copies.
    onPush(await ask({ type: "RQ_REACT", room_id: state.current, msg_id: msgId, emoji, on: !mine.has(emoji) }));
  } catch (e) {
    notice(e.message);
  }
}

function togglePicker(el, msgId) {
  const open = el.querySelector(".picker");
  const button = el.querySelector(".react");
  if (open) {
    open.remove();
    button.setAttribute("aria-expanded", "false");
    return;
  }
  const picker = document.createElement("span");
  picker.className = "picker";
  picker.setAttribute("role", "group");
  picker.setAttribute("aria-label", "Reactions");
  for (const emoji of EMOJI) {
    const b = toolButton(emoji, () => {
      picker.remove();
      button.setAttribute("aria-expanded", "false");
      react(msgId, emoji);
    });
    b.setAttribute("aria-label", "React with " + emoji);
    picker.append(b);
  }
  el.append(picker);
  button.setAttribute("aria-expanded", "true");
  picker.querySelector("button").focus();
}

function startReply(m) {
  state.replyTo = m.message_id;
  $("replying-text").textContent = `Replying to ${m.login}: ${m.message}`;
  $("replying").hidden = false;
  $("message").focus();
}

function cancelReply() {
  state.replyTo = null;
  $("replying").hidden = true;
}

async function pinMessage(msgId, pinned) {
  try {
    onPush(await ask({ type: "RQ_PIN", room_id: state.current, msg_id: msgId, pinned }));
  } catch (e) {
    notice(e.message);
  }
}

/** Lists messages in the results panel under a title. */
function showList(title, msgs, empty) {
  $("results-title").textContent = title;
  const list = $("results");
  list.replaceChildren();
  if (!msgs.length) {
    const none = document.createElement("li");
    none.textContent = empty;
    list.append(none);
  }
  for (const m of msgs) {
    const item = document.createElement("li");
    const el = messageElement(m);
    const where = state.rooms.get(m.room_id);
    if (where && m.room_id !== state.current) {
      const label = document.createElement("span");
      label.className = "edited";
      label.textContent = " in " + roomLabel(where);
      el.append(label);
    }
    if (title === "Pinned") {
      const room = state.rooms.get(m.room_id);
      if (room && ["DB_CUSTOMER", "DB_ADMIN", "DB_MODERATOR"].includes(room.role)) {
        el.querySelector(".tools")?.append(toolButton("Unpin", () => pinMessage(m.message_id, false).then(showPins)));
      }
    }
    item.append(el);
    list.append(item);
  }
  $("results-panel").hidden = false;
}

async function showPins() {
  if (state.current === null) return;
  try {
    const reply = await ask({ type: "RQ_GET_PINS", room_id: state.current });
    showList("Pinned", reply.msgs, "Nothing is pinned here.");
  } catch (e) {
    notice(e.message);
  }
}

async function showMentions() {
  try {
    const reply = await ask({ type: "RQ_GET_MENTIONS", count: 50 });
    showList("Mentions", reply.msgs, "Nobody has mentioned you yet.");
  } catch (e) {
    notice(e.message);
  }
}

/** Tells the others the user is typing, at most every 3 s. */
function announceTyping() {
  const text = $("message").value;
  if (!text || text.startsWith("/") || state.current === null || !state.open) return;
  if (Date.now() - state.typingSent < 3000) return;
  state.typingSent = Date.now();
  request({ type: "RQ_TYPING", room_id: state.current }).catch(() => {});
}

/** Tab after "@ab": the room's members whose login starts with "ab". */
function completeMention(e) {
  const box = $("message");
  const upto = box.value.slice(0, box.selectionStart);
  const match = /@([\w-]*)$/.exec(upto);
  if (!match) return;
  const found = state.members
    .map((m) => m.login)
    .filter((l) => l.toLowerCase().startsWith(match[1].toLowerCase()) && l !== state.me?.login);
  if (!found.length) return;
  e.preventDefault();
  const login = found[0];
  const before = upto.slice(0, upto.length - match[1].length);
  box.value = before + login + " " + box.value.slice(box.selectionStart);
  const at = before.length + login.length + 1;
  box.setSelectionRange(at, at);
}

function toolButton(label, action) {
  const b = document.createElement("button");
  b.type = "button";
  b.className = "link";
  b.textContent = label;
  b.addEventListener("click", action);
  return b;
}

function formatSize(bytes) {
  if (bytes < 1024) return bytes + " B";
  if (bytes < 1024 * 1024) return (bytes / 1024).toFixed(1) + " KiB";
  return (bytes / 1024 / 1024).toFixed(1) + " MiB";
}

function notice(text, kind) {
  const line = document.createElement("div");
  line.className = kind ? "notice " + kind : "notice";
  line.textContent = text;
  $("messages").append(line);
  $("messages").scrollTop = $("messages").scrollHeight;
}

function atBottom() {
  const box = $("messages");
  return box.scrollHeight - box.scrollTop - box.clientHeight < 40;
}

function appendMessage(m) {
  const stick = atBottom();
  $("messages").querySelector(".notice.empty")?.remove();
  $("messages").append(messageElement(m));
  state.newest = Math.max(state.newest ?? 0, m.message_id);
  if (state.oldest === null) state.oldest = m.message_id;
  if (stick) $("messages").scrollTop = $("messages").scrollHeight;
  markRead();
}

async function send() {
  const box = $("message");
  const text = box.value.trim();
  if (!text || state.current === null) return;
  try {
    const msg = { type: "RQ_MSG", room_id: state.current, message: text };
    if (state.replyTo) msg.reply_to = state.replyTo;
    const sent = await ask(msg);
    box.value = "";
    cancelReply();
    if (sent.room_id === state.current && !findMessage(sent.message_id)) appendMessage(sent);
  } catch (e) {
    notice(e.message);
  }
}

function findMessage(id) {
  return $("messages").querySelector(`.msg[data-id="${Number(id)}"]`);
}

async function editMessage(id, textEl) {
  const now = prompt("Edit your message", textEl.textContent);
  if (now === null || !now.trim()) return;
  try {
    await ask({ type: "RQ_EDIT_MSG", room_id: state.current, msg_id: id, msg: now.trim() });
  } catch (e) {
    notice(e.message);
  }
}

async function deleteMessage(id) {
  if (!confirm("Delete this message for everyone?")) return;
  try {
    await ask({ type: "RQ_DEL_MSG", room_id: state.current, msg_id: id });
  } catch (e) {
    notice(e.message);
  }
}

// --- Files ----------------------------------------------------------------

function upload(file) {
  if (state.current === null) return;
  const status = $("upload-status");
  const xhr = new XMLHttpRequest();
  const params = new URLSearchParams({ room_id: String(state.current), name: file.name });
  xhr.open("POST", "/files?" + params);
  xhr.setRequestHeader("Authorization", "Bearer " + state.token);
  xhr.upload.onprogress = (e) => {
    if (e.lengthComputable) status.textContent = `Uploading ${file.name}: ${Math.floor((e.loaded * 100) / e.total)}%`;
  };
  xhr.onload = () => {
    let why = "";
    try {
      why = JSON.parse(xhr.responseText).msg || "";
    } catch {
      why = xhr.statusText;
    }
    status.textContent = xhr.status === 200 ? `Uploaded ${file.name}` : `Upload failed: ${why}`;
  };
  xhr.onerror = () => {
    status.textContent = "Upload failed: connection lost";
  };
  status.textContent = `Uploading ${file.name}: 0%`;
  xhr.send(file);
}

async function download(m) {
  const status = $("upload-status");
  try {
    const res = await fetch(`/files/${m.message_id}?room_id=${m.room_id}`, {
      headers: { Authorization: "Bearer " + state.token },
    });
    if (!res.ok) throw new Error((await res.json().catch(() => ({}))).msg || res.statusText);
    const blob = await res.blob();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = m.file_name ?? m.message;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    status.textContent = `Downloaded ${a.download}`;
  } catch (e) {
    status.textContent = "Download failed: " + e.message;
  }
}

// --- People ---------------------------------------------------------------

async function loadFriends() {
  try {
    const reply = await ask({ type: "RQ_GET_FRIENDS" });
    state.friends = new Map(reply.friends.map((f) => [f.user_id, f]));
    renderFriends();
  } catch {
    // Shown again on the next change.
  }
}

function renderFriends() {
  const list = $("friends");
  list.replaceChildren();
  for (const f of state.friends.values()) {
    const item = document.createElement("li");
    const name = document.createElement("span");
    name.className = f.online ? "online" : "offline";
    name.textContent = f.login;
    const presence = document.createElement("span");
    presence.className = "sr-only";
    presence.textContent = f.online ? " (online)" : " (offline)";
    name.append(presence);
    const dm = toolButton("Message", () => openDirect(f.login));
    dm.setAttribute("aria-label", "Message " + f.login);
    item.append(name, dm);
    list.append(item);
  }
}

async function openDirect(login) {
  try {
    const reply = await ask({ type: "RQ_OPEN_DM", login });
    state.rooms.set(reply.room.id, { ...reply.room, unread: 0 });
    $("side").classList.remove("open");
    await openRoom(reply.room.id);
  } catch (e) {
    notice(e.message);
  }
}

async function showMembers() {
  const panel = $("members-panel");
  if (!panel.hidden) {
    panel.hidden = true;
    $("show-members").setAttribute("aria-expanded", "false");
    return;
  }
  if (state.current === null) return;
  try {
    const reply = await ask({ type: "RQ_GET_MEMBERS", room_id: state.current });
    const list = $("members");
    list.replaceChildren();
    for (const m of reply.members) {
      const item = document.createElement("li");
      item.className = m.online ? "online" : "offline";
      item.textContent = `${m.login} (${m.role.replace("DB_", "").toLowerCase()})${m.online ? " online" : ""}`;
      list.append(item);
    }
    panel.hidden = false;
    $("show-members").setAttribute("aria-expanded", "true");
  } catch (e) {
    notice(e.message);
  }
}

// --- Finding, creating, searching -------------------------------------------

let findTimer = null;
function findRooms() {
  clearTimeout(findTimer);
  findTimer = setTimeout(async () => {
    const name = $("room-search").value.trim();
    const list = $("found");
    try {
      const reply = await ask({ type: "RQ_SEARCH_CH", name });
      list.replaceChildren();
      if (!reply.rooms.length) {
        const none = document.createElement("li");
        none.textContent = "No such room.";
        list.append(none);
      }
      for (const room of reply.rooms) {
        const item = document.createElement("li");
        const label = document.createElement("span");
        label.textContent = "#" + room.name + " ";
        const member = state.rooms.has(room.id);
        const go = toolButton(member ? "Open" : "Join", () => joinRoom(room));
        item.append(label, go);
        list.append(item);
      }
    } catch (e) {
      list.replaceChildren();
      notice(e.message);
    }
  }, 200);
}

async function joinRoom(room) {
  try {
    if (!state.rooms.has(room.id)) {
      const joined = await ask({ type: "RQ_JOIN_ROOM", room_id: room.id });
      state.rooms.set(joined.id, { ...joined, unread: 0 });
    }
    $("find-form").hidden = true;
    $("side").classList.remove("open");
    await openRoom(room.id);
  } catch (e) {
    notice(e.message);
  }
}

async function createRoom() {
  const name = $("room-name").value.trim();
  if (!name) return;
  const roomType = $("room-private").checked ? "DB_PRIVAT_CHAT" : "DB_GLOBAL_CHAT";
  try {
    const room = await ask({ type: "RQ_NEW_ROOM", name, desc: "", room_type: roomType });
    state.rooms.set(room.id, { ...room, unread: 0 });
    $("room-name").value = "";
    $("new-room-form").hidden = true;
    $("side").classList.remove("open");
    await openRoom(room.id);
  } catch (e) {
    notice(e.message);
  }
}

async function searchMessages() {
  const text = $("search").value.trim();
  if (!text) return;
  const msg = { type: "RQ_SEARCH_MSGS", msg: text };
  if (state.current !== null) msg.room_id = state.current;
  try {
    const reply = await ask(msg);
    showList("Search results", reply.msgs, "Nothing found.");
  } catch (e) {
    notice(e.message);
  }
}

// --- Pushes ---------------------------------------------------------------

function onPush(msg) {
  switch (msg.type) {
    case "RQ_MSG": {
      const room = state.rooms.get(msg.room_id);
      if (msg.room_id === state.current) {
        if (!findMessage(msg.message_id)) appendMessage(msg);
      } else if (room && (!state.me || msg.user_id !== state.me.id)) {
        room.unread = (room.unread ?? 0) + 1;
        if (state.me && (msg.mentions ?? []).includes(state.me.id)) room.mentions = (room.mentions ?? 0) + 1;
        renderRooms();
      }
      if (msg.room_id === state.current && msg.user_id !== state.me?.id) $("typing").textContent = "";
      break;
    }
    case "RQ_REACT": {
      const counts = state.reactions.get(msg.msg_id) ?? new Map();
      counts.set(msg.emoji, Math.max(0, (counts.get(msg.emoji) ?? 0) + (msg.on ? 1 : -1)));
      state.reactions.set(msg.msg_id, counts);
      if (msg.user_id === state.me?.id) {
        const mine = state.mine.get(msg.msg_id) ?? new Set();
        if (msg.on) mine.add(msg.emoji);
        else mine.delete(msg.emoji);
        state.mine.set(msg.msg_id, mine);
      }
      if (msg.room_id === state.current) renderReactions(msg.msg_id);
      break;
    }
    case "RQ_PIN":
      if (msg.room_id === state.current) {
        const who =
          msg.user_id === state.me?.id ? "You" : (state.members.find((m) => m.user_id === msg.user_id)?.login ?? "Someone");
        notice(`${who} ${msg.pinned ? "pinned" : "unpinned"} a message: see Pinned`);
      }
      break;
    case "RQ_TYPING":
      if (msg.room_id === state.current && msg.login) {
        $("typing").textContent = `${msg.login} is typing…`;
        clearTimeout(state.typingTimer);
        state.typingTimer = setTimeout(() => {
          $("typing").textContent = "";
        }, 5000);
      }
      break;
    case "RQ_EDIT_MSG": {
      const el = msg.room_id === state.current && findMessage(msg.msg_id);
      if (el) {
        el.querySelector(".text").textContent = msg.msg;
        if (!el.querySelector(".edited")) el.querySelector(".text").after(editedMark());
      }
      break;
    }
    case "RQ_DEL_MSG": {
      const el = msg.room_id === state.current && findMessage(msg.msg_id);
      if (el) el.remove();
      break;
    }
    case "RQ_DEL_HIST":
      if (msg.room_id === state.current) {
        $("messages").replaceChildren();
        notice("The history was cleared.");
      }
      break;
    case "RQ_NEW_MEMBER":
      if (msg.room_id === state.current && msg.login !== state.me?.login) {
        notice(`${msg.login} joined`);
        state.members.push({ user_id: msg.user_id, login: msg.login });
      }
      break;
    case "RQ_LEAVE_ROOM":
      if (msg.login === state.me?.login) dropRoom(msg.room_id, "You left the room.");
      else if (msg.room_id === state.current) notice(`${msg.login} left`);
      break;
    case "RQ_BAN_MEMBER":
      if (msg.user_id === state.me?.id) dropRoom(msg.room_id, "You were banned from the room.");
      break;
    case "RQ_DEL_ROOM":
      dropRoom(msg.room_id, "The room was deleted.");
      break;
    case "RQ_JOIN_ROOM":
    case "RQ_NEW_ROOM":
      state.rooms.set(msg.id, { ...msg, unread: 0 });
      renderRooms();
      break;
    case "RQ_OPEN_DM":
      state.rooms.set(msg.room.id, { ...msg.room, unread: 0 });
      renderRooms();
      break;
    case "RQ_UPD_ROOM_NAME": {
      const room = state.rooms.get(msg.room_id);
      if (room) {
        room.name = msg.room_name;
        renderRooms();
        if (msg.room_id === state.current) $("room-title").textContent = roomLabel(room);
      }
      break;
    }
    case "RQ_UPD_ROOM_DESC":
      if (msg.room_id === state.current) notice(`Topic: ${msg.desc}`);
      break;
    case "RQ_ADD_FRIEND":
    case "RQ_DEL_FRIEND":
      loadFriends();
      break;
    case "RQ_PRESENCE": {
      const friend = state.friends.get(msg.user_id);
      if (friend) {
        friend.online = msg.online;
        renderFriends();
      }
      break;
    }
    case "RQ_LOG_OUT":
      forgetSession();
      showWelcome("This session was logged out.");
      break;
    default:
      break;
  }
}

function dropRoom(id, why) {
  state.rooms.delete(id);
  if (state.current === id) {
    state.current = null;
    $("messages").replaceChildren();
    $("room-title").textContent = "Parley";
    notice(why);
  }
  renderRooms();
}

// --- Wiring ---------------------------------------------------------------

function wire() {
  $("auth").addEventListener("submit", (e) => {
    e.preventDefault();
    authenticate("RQ_LOG_IN");
  });
  $("sign-up").addEventListener("click", () => authenticate("RQ_SIGN_UP"));
  $("log-out").addEventListener("click", logOut);
  $("compose").addEventListener("submit", (e) => {
    e.preventDefault();
    send();
  });
  $("message").addEventListener("input", announceTyping);
  $("cancel-reply").addEventListener("click", cancelReply);
  $("show-pins").addEventListener("click", showPins);
  $("show-mentions").addEventListener("click", showMentions);
  $("message").addEventListener("keydown", (e) => {
    if (e.key === "Tab" && !e.shiftKey) completeMention(e);
    if (e.key === "Escape" && state.replyTo) cancelReply();
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      send();
    }
  });
  $("messages").addEventListener("scroll", () => {
    if ($("messages").scrollTop < 60) loadOlder();
  });
  $("new-room").addEventListener("click", () => {
    const form = $("new-room-form");
    form.hidden = !form.hidden;
    if (!form.hidden) $("room-name").focus();
  });
  $("new-room-form").addEventListener("submit", (e) => {
    e.preventDefault();
    createRoom();
  });
  $("find-rooms").addEventListener("click", () => {
    const form = $("find-form");
    form.hidden = !form.hidden;
    if (!form.hidden) {
      $("room-search").focus();
      findRooms();
    }
  });
  $("find-form").addEventListener("submit", (e) => {
    e.preventDefault();
    findRooms();
  });
  $("room-search").addEventListener("input", findRooms);
  $("friend-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const login = $("friend-login").value.trim();
    if (!login) return;
    try {
      await ask({ type: "RQ_ADD_FRIEND", login });
      $("friend-login").value = "";
      loadFriends();
    } catch (err) {
      notice(err.message);
    }
  });
  $("search-form").addEventListener("submit", (e) => {
    e.preventDefault();
    searchMessages();
  });
  $("close-results").addEventListener("click", () => {
    $("results-panel").hidden = true;
  });
  $("show-members").addEventListener("click", showMembers);
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) upload(file);
    $("file").value = "";
  });
  $("toggle-rooms").addEventListener("click", () => {
    const open = $("side").classList.toggle("open");
    $("toggle-rooms").setAttribute("aria-expanded", String(open));
  });
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") {
      $("side").classList.remove("open");
      $("new-room-form").hidden = true;
      $("find-form").hidden = true;
      $("results-panel").hidden = true;
    }
  });
}

wire();
connect();
