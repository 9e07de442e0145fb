//! Who is online on the other nodes of a cluster, as this node last heard.
//!
//! Each node tells the others when a user's first connection on it logs in
//! or its last one goes, and every [`HEARTBEAT`] how many users it has and a
//! digest of which. A heartbeat that disagrees with what this node holds
//! (a presence message was lost, or the node is new here) makes this node
//! ask for that node's whole list. A node silent for [`NODE_SILENCE`] (it
//! died, or the bus is away) is forgotten, and its users with it.
//!
//! The roster keeps one set of users per node and reports changes to those
//! sets; whether a change makes a user come or go for the whole cluster is
//! for [`crate::presence::Presence`] to say, which counts the nodes.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::presence::user_digest;

/// How often a node tells the others it is alive, with its users' digest.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// How long a node may be silent before its users count as gone.
pub const NODE_SILENCE: Duration = Duration::from_secs(5);

/// A change to one node's users: the user is now online there (true) or
/// no longer (false).
pub type Change = (i64, bool);

/// The other nodes' online users.
#[derive(Default)]
pub struct Roster {
    nodes: HashMap<String, NodeUsers>,
}

/// One node's users, and when it was last heard.
struct NodeUsers {
    users: HashSet<i64>,
    digest: u64,
    heard: Instant,
}

/// What a heartbeat shows.
#[derive(Debug, PartialEq, Eq)]
pub enum Heard {
    /// This node's view of it agrees.
    InStep,
    /// Its list differs from what this node holds (or it is new): ask for it.
    OutOfStep,
}

impl Roster {
    /// `node` says `user_id` is online there now (or no longer).
    pub fn user(&mut self, node: &str, user_id: i64, online: bool, now: Instant) -> Option<Change> {
        let entry = self.node(node, now);
        let changed = if online {
            entry.users.insert(user_id)
        } else {
            entry.users.remove(&user_id)
        };
        changed.then(|| {
            entry.digest ^= user_digest(user_id);
            (user_id, online)
        })
    }

    /// `node`'s heartbeat: it has `count` users, whose digest
    /// ([`crate::presence::digest`]) is `digest`.
    pub fn heartbeat(&mut self, node: &str, count: u64, digest: u64, now: Instant) -> Heard {
        let known = self.nodes.contains_key(node);
        let entry = self.node(node, now);
        if known && entry.users.len() as u64 == count && entry.digest == digest {
            Heard::InStep
        } else {
            Heard::OutOfStep
        }
    }

    /// `node`'s whole list, in place of what this node held of it.
    pub fn replace(&mut self, node: &str, users: Vec<i64>, now: Instant) -> Vec<Change> {
        let new: HashSet<i64> = users.into_iter().collect();
        let entry = self.node(node, now);
        let mut changes: Vec<Change> = entry.users.difference(&new).map(|&u| (u, false)).collect();
        changes.extend(new.difference(&entry.users).map(|&u| (u, true)));
        entry.digest = crate::presence::digest(new.iter().copied());
        entry.users = new;
        changes
    }

    /// More of `node`'s list, after the part [`Roster::replace`] took.
    pub fn add(&mut self, node: &str, users: Vec<i64>, now: Instant) -> Vec<Change> {
        users
            .into_iter()
            .filter_map(|user_id| self.user(node, user_id, true, now))
            .collect()
    }

    /// `node` left (it said so, or was silent too long): its users go.
    pub fn forget(&mut self, node: &str) -> Vec<Change> {
        self.nodes
            .remove(node)
            .map(|n| n.users.into_iter().map(|u| (u, false)).collect())
            .unwrap_or_default()
    }

    /// Forgets the nodes silent for [`NODE_SILENCE`]; returns their users' changes.
    pub fn expire(&mut self, now: Instant) -> Vec<Change> {
        let silent: Vec<String> = self
            .nodes
            .iter()
            .filter(|(_, n)| now.duration_since(n.heard) >= NODE_SILENCE)
            .map(|(node, _)| node.clone())
            .collect();
        let mut changes = Vec::new();
        for node in silent {
            log::warn!("node {node} was silent for {NODE_SILENCE:?}: its users count as gone");
            changes.extend(self.forget(&node));
        }
        changes
    }

    /// The other nodes heard from and not forgotten.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    fn node(&mut self, node: &str, now: Instant) -> &mut NodeUsers {
        let entry = self.nodes.entry(node.to_owned()).or_insert_with(|| NodeUsers {
            users: HashSet::new(),
            digest: 0,
            heard: now,
        });
        entry.heard = now;
        entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::digest;

    #[test]
    fn changes_and_heartbeats_keep_step() {
        let now = Instant::now();
        let mut r = Roster::default();
        assert_eq!(
            r.heartbeat("a", 0, 0, now),
            Heard::OutOfStep,
            "a new node's list is asked for"
        );
        assert_eq!(r.user("a", 1, true, now), Some((1, true)));
        assert_eq!(r.user("a", 1, true, now), None, "already there");
        assert_eq!(r.user("a", 2, true, now), Some((2, true)));
        assert_eq!(r.user("a", 1, false, now), Some((1, false)));
        assert_eq!(r.heartbeat("a", 1, digest([2]), now), Heard::InStep);
        // A message was lost: node a also has user 3.
        assert_eq!(r.heartbeat("a", 2, digest([2, 3]), now), Heard::OutOfStep);
        let mut changes = r.replace("a", vec![3, 2], now);
        changes.sort();
        assert_eq!(changes, vec![(3, true)]);
        assert_eq!(r.heartbeat("a", 2, digest([3, 2]), now), Heard::InStep);
        // A list in two parts.
        let mut changes = r.replace("a", vec![4], now);
        changes.sort();
        assert_eq!(changes, vec![(2, false), (3, false), (4, true)]);
        assert_eq!(r.add("a", vec![2, 4], now), vec![(2, true)]);
        assert_eq!(r.heartbeat("a", 2, digest([2, 4]), now), Heard::InStep);
    }

    #[test]
    fn a_silent_node_is_forgotten_with_its_users() {
        let now = Instant::now();
        let mut r = Roster::default();
        r.user("a", 1, true, now);
        r.user("b", 2, true, now);
        let later = now + NODE_SILENCE;
        r.heartbeat("b", 1, digest([2]), later - Duration::from_millis(1));
        assert_eq!(r.expire(later), vec![(1, false)]);
        assert_eq!(r.nodes(), 1);
        assert_eq!(r.forget("b"), vec![(2, false)]);
        assert!(r.expire(later + NODE_SILENCE).is_empty());
    }
}
