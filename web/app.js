// Parley's web client: one WebSocket to the server that served this page,
// speaking the protocol of protocol.md (name dialect, one object per frame).
// Text from users is only ever set as textContent, never parsed as HTML.
//
// Modules: state (what the page knows), net (the connection), messages
// (showing and acting on messages), this one (accounts, rooms, people,
// pushes, and the wiring).

import { ask, connect, passwordDigest, request } from "./net.js";
import {
  announceTyping, appendMessage, applyPin, applyReaction, cancelReply, completeMention, editedMark,
  findMessage, markRead, messageElement, notice, send, showList, showMentions, showPins, toolButton, upload,
} from "./messages.js";
import { $, PAGE, ROOM_KEY, TOKEN_KEY, roomLabel, state } from "./state.js";

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
    case "RQ_REACT":
      applyReaction(msg);
      break;
    case "RQ_PIN":
      applyPin(msg);
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

/** Each connection: resume the saved session, or ask who this is. */
async function opened() {
  if (!state.token) {
    showWelcome("");
    return;
  }
  const resumed = await request({ type: "RQ_TOKEN", token: state.token }).catch(() => null);
  if (resumed && resumed.type === "RQ_TOKEN") {
    await enterChat(resumed);
  } else if (resumed) {
    forgetSession();
    showWelcome("Your session has ended; please log in again.");
  }
}

wire();
connect({ opened, pushed: onPush });

