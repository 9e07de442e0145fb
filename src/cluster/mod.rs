//! Several nodes as one server (design.md §9): each node keeps its reactor,
//! workers and writer over a shared store, and after each commit tells the
//! others over a bus what its connections were told, so every node delivers
//! to its own connections.
//!
//! `wire` is what travels on the bus, `bus` the NATS connection on a thread
//! of its own, and `sequencer` the per-room order in which a node delivers
//! stored messages, whichever node stored them (a gap is filled from the
//! store). `roster` is who is online on the other nodes, so that presence
//! is the cluster's, not one node's.

#[cfg(feature = "cluster")]
pub mod bus;
pub mod roster;
pub mod sequencer;
pub mod wire;
