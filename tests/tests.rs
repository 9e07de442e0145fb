//! Integration tests: a real server on 127.0.0.1:0 with a temporary data
//! directory, driven over real TCP connections.

// Helpers: starting servers, connecting and signing up users.
mod util;

// Line framing and malformed input: split writes, oversize lines, bad JSON.
mod framing;
// Both dialects, req_id echo, the old client's conventions.
mod dialect;
// Sign-up, log-in, token resume, log-out, profile, member info, throttling.
mod accounts;
// Start-up failures, log-in timeout, limits, backpressure, graceful shutdown.
mod lifecycle;
// Rooms: every request, pushes and their recipients, the permission matrix.
mod rooms;
// Messages: send, edit, delete, history paging, search, read markers, durability.
mod messages;
// Friends, direct messages, presence, offline catch-up.
mod friends;
// Replies, reactions, mentions, typing, pins (design.md §7).
mod conversation;
// File upload and download.
mod files;
// The parley terminal client, driven through stdin.
mod cli;
// The web listener: page, WebSocket, origins, frames, files over HTTP.
mod web;
// The web client in headless Chromium.
mod browser;
// The full-screen parley in a real terminal (tmux).
mod tui;
// Attacks by hostile clients, each with a bystander whose answers must stay prompt.
mod abuse;
// Online backups taken under load, restored and served.
mod backup;
// One ordered write path: commit order, the same order for all, presence, a tiny queue.
mod ordering;
// TLS on the reactor: chat, plaintext beside it, refusals, stalls, certificate reload.
mod tls;
// Storage faults: a failing fsync.
mod faults;
// parleyd admin and --check-config.
mod admin;
// Prometheus metrics.
mod monitoring;
// The ngobrol bridge against the real RabbitMQ broker (with the ngobrol feature).
#[cfg(feature = "ngobrol")]
mod ngobrol;
// Three nodes on PostgreSQL and NATS (with the cluster feature).
#[cfg(feature = "cluster")]
mod cluster;
