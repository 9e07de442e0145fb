// The connection: one WebSocket to the server that served the page, one
// protocol object per frame, requests matched to answers by req_id.

import { sha256Hex } from "./sha256.js";
import { $, state } from "./state.js";

/**
 * Connects, and again after every loss (1, 2, 4 ... 30 s apart).
 * `opened()` runs on each connection; `pushed(msg)` gets what answers no request.
 */
export function connect(handlers) {
  const scheme = location.protocol === "https:" ? "wss://" : "ws://";
  const ws = new WebSocket(scheme + location.host + "/ws");
  state.ws = ws;
  setConnection("connecting…");
  ws.onopen = async () => {
    state.open = true;
    state.retry = 0;
    setConnection("");
    await handlers.opened();
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
      handlers.pushed(msg);
    }
  };
  ws.onclose = () => {
    state.open = false;
    for (const waiter of state.waiting.values()) waiter({ type: "RQ_ERROR_MSG", msg: "connection lost" });
    state.waiting.clear();
    const wait = Math.min(30, 2 ** state.retry);
    state.retry += 1;
    setConnection(`connection lost; reconnecting in ${wait} s`);
    setTimeout(() => connect(handlers), wait * 1000);
  };
}

export function setConnection(text) {
  $("connection").textContent = text;
}

/** Sends a request; resolves with its answer (an RQ_ERROR_MSG included). */
export function request(msg) {
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
export async function ask(msg) {
  const reply = await request(msg);
  if (reply.type === "RQ_ERROR_MSG") throw new Error(reply.msg || "refused");
  return reply;
}

export async function passwordDigest(password) {
  const bytes = new TextEncoder().encode(password);
  if (globalThis.crypto && crypto.subtle) {
    const digest = await crypto.subtle.digest("SHA-256", bytes);
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }
  return sha256Hex(bytes);
}

