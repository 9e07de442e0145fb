// Messages: how each is shown (replies, reactions, mentions, files), what
// can be done to it, sending, and the lists of pinned and mentioning ones.

import { ask, request } from "./net.js";
import { $, EMOJI, roomLabel, state } from "./state.js";

export function markRead() {
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

export function messageElement(m) {
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

export function editedMark() {
  const edited = document.createElement("span");
  edited.className = "edited";
  edited.textContent = " (edited)";
  return edited;
}

export function renderReactions(msgId, span) {
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
    applyReaction(await ask({ type: "RQ_REACT", room_id: state.current, msg_id: msgId, emoji, on: !mine.has(emoji) }));
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

export function startReply(m) {
  state.replyTo = m.message_id;
  $("replying-text").textContent = `Replying to ${m.login}: ${m.message}`;
  $("replying").hidden = false;
  $("message").focus();
}

export function cancelReply() {
  state.replyTo = null;
  $("replying").hidden = true;
}

async function pinMessage(msgId, pinned) {
  try {
    applyPin(await ask({ type: "RQ_PIN", room_id: state.current, msg_id: msgId, pinned }));
  } catch (e) {
    notice(e.message);
  }
}

/** Lists messages in the results panel under a title. */
export function showList(title, msgs, empty) {
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

export async function showPins() {
  if (state.current === null) return;
  try {
    const reply = await ask({ type: "RQ_GET_PINS", room_id: state.current });
    showList("Pinned", reply.msgs, "Nothing is pinned here.");
  } catch (e) {
    notice(e.message);
  }
}

export async function showMentions() {
  try {
    const reply = await ask({ type: "RQ_GET_MENTIONS", count: 50 });
    showList("Mentions", reply.msgs, "Nobody has mentioned you yet.");
  } catch (e) {
    notice(e.message);
  }
}

/** Tells the others the user is typing, at most every 3 s. */
export function announceTyping() {
  const text = $("message").value;
  if (!text || text.startsWith("/") || state.current === null || !state.open) return;
  if (Date.now() - state.typingSent < 3000) return;
  state.typingSent = Date.now();
  request({ type: "RQ_TYPING", room_id: state.current }).catch(() => {});
}

/** Tab after "@ab": the room's members whose login starts with "ab". */
export function completeMention(e) {
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

export function toolButton(label, action) {
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

export function notice(text, kind) {
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

export function appendMessage(m) {
  const stick = atBottom();
  $("messages").querySelector(".notice.empty")?.remove();
  $("messages").append(messageElement(m));
  state.newest = Math.max(state.newest ?? 0, m.message_id);
  if (state.oldest === null) state.oldest = m.message_id;
  if (stick) $("messages").scrollTop = $("messages").scrollHeight;
  markRead();
}

export async function send() {
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

export function findMessage(id) {
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

export function upload(file) {
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

export async function download(m) {
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


/** A reaction came or went (anyone's, the user's own included). */
export function applyReaction(msg) {
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
}

/** A message was pinned or unpinned. */
export function applyPin(msg) {
  if (msg.room_id !== state.current) return;
  const who =
    msg.user_id === state.me?.id ? "You" : (state.members.find((m) => m.user_id === msg.user_id)?.login ?? "Someone");
  notice(`${who} ${msg.pinned ? "pinned" : "unpinned"} a message: see Pinned`);
}
