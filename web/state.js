// What the page knows, shared by its modules, and small helpers.

export const $ = (id) => document.getElementById(id);
export const TOKEN_KEY = "parley.token";
export const ROOM_KEY = "parley.room";
export const PAGE = 50;

export const state = {
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

export const EMOJI = ["👍", "❤️", "😂", "🎉", "😮", "😢"];

export function roomLabel(room) {
  return room.peer ? "@" + room.peer.login : "#" + room.name;
}

