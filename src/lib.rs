//! Parley: a lightweight chat server speaking newline-delimited JSON over TCP.
//!
//! # Layout
//! - [`server`]: start-up (data directory, database, threads, listener) and shutdown.
//! - [`reactor`]: the one mio thread owning every socket: accepting, a
//!   connection's turn, routing requests, fan-out, sessions, transfers.
//! - [`conn`]: one connection's buffers and its state machine.
//! - [`transport`]: a connection's bytes, plain or TLS; [`tls`]: certificates and trust.
//! - [`admission`]: caps on connections that have not logged in.
//! - [`framing`]: splitting bytes into lines with a length limit.
//! - [`transfer`]: upload and download state; [`files`]: stored files and the file-I/O thread.
//! - [`disk`]: quotas, the free-space reserve, and the ballast that keeps deleting possible.
//! - [`model`]: domain types, and the one table of each coded enumeration.
//! - [`protocol`]: kinds, codes, request decoding, reply encoding (no I/O).
//! - [`compat`]: the rules old uchat clients rely on, in one place.
//! - [`job`]: messages between the reactor, the workers and the writer.
//! - [`worker`]: the read workers and the password-hashing threads.
//! - [`writer`]: the one thread that runs every write, in order, in group commits;
//!   [`checkpointer`]: writes the log back into the database file beside it.
//! - [`handler`]: one module per family of requests.
//! - [`store`]: every SQL statement, the writer's memory of rooms, and the migrations in `db/`.
//! - [`backup`]: online backups of a running server's data directory;
//!   [`admin`]: `parleyd admin`, the operator's commands.
//! - [`auth`], [`throttle`], [`presence`], [`shared`]: what handlers share.
//! - [`metrics`]: what the server counts, served as Prometheus text.
//! - [`logging`], [`reload`]: the log, and what SIGHUP reloads.
//! - [`client`]: a small blocking client for tests, the CLI and the load generator;
//!   [`client_stream`]: its plain or TLS stream, in two halves.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod backup;
pub mod checkpointer;
pub mod client;
pub mod client_stream;
pub mod cluster;
pub mod compat;
pub mod config;
pub mod conn;
pub mod disk;
pub mod error;
pub mod files;
pub mod framing;
pub mod handler;
pub mod job;
pub mod local;
pub mod logging;
pub mod metrics;
pub mod model;
#[cfg(feature = "ngobrol")]
pub mod ngobrol;
pub mod presence;
pub mod protocol;
pub mod reactor;
pub mod reload;
pub mod server;
pub mod shared;
pub mod store;
pub mod throttle;
pub mod tls;
pub mod transfer;
pub mod transport;
pub mod web;
pub mod worker;
pub mod writer;

pub use config::Config;
pub use reactor::ShutdownHandle;
pub use server::Server;
