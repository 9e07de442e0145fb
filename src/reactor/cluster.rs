//! The reactor's side of a cluster: what its connections are told goes to
//! the other nodes too, what the other nodes tell theirs reaches this
//! node's, and stored messages reach every connection in their room's
//! order (the sequencer holds one until those before it were delivered,
//! and asks the store for those that do not come, and every second which
//! rooms have new messages, for a room's last message lost on the bus).
//! Presence is the cluster's: a node tells the others who comes and goes
//! on it, and each node tells its own connections when a user comes or
//! goes across all of them (`cluster::roster`).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::Token;

use super::Reactor;
use crate::cluster::roster::{Heard, Roster, HEARTBEAT};
use crate::cluster::sequencer::{Sequencer, TAIL_POLL};
use crate::cluster::wire::{self, Envelope, Event};
use crate::job::{FilledGap, Push, Revoke, RoomsNews, Task, NO_CONN};
use crate::model::RoomTail;
use crate::protocol::ReqId;
use crate::shared::Shared;
use crate::throttle::AuthAttempt;

/// Pushes from the bus answer no connection of this node.
const NO_REQUESTER: Token = Token(NO_CONN as usize);

/// How many polls back the next poll for rooms' newest messages starts:
/// a message whose id was drawn before a later one's may commit after it,
/// so each poll looks again at what the last few saw.
const TAIL_POLLS_OVERLAP: usize = 3;
/// A poll unanswered this long (the writer failed it) is asked again.
const TAIL_POLL_TIMEOUT: Duration = Duration::from_secs(10);

/// A push held until its room's earlier messages were delivered.
pub(super) struct Held {
    push: Push,
    requester: Token,
    req_id: Option<ReqId>,
}

/// This node's link to the others.
pub struct NodeLink {
    #[cfg(feature = "cluster")]
    bus: crate::cluster::bus::Bus,
    events: Receiver<Envelope>,
    sequencer: Sequencer<Held>,
    /// Pushes made on this node in this pass of the reactor, published
    /// together at its end ([`Reactor::publish_pushes`]).
    #[cfg_attr(not(feature = "cluster"), allow(dead_code))]
    outgoing: Vec<Push>,
    /// Whose log-in throttle counts the other nodes' failed log-ins.
    shared: Arc<Shared>,
    /// The store's rooms' newest messages are asked for at this time...
    next_tail_poll: Instant,
    /// ...unless the last poll, asked at this time, is unanswered.
    tail_poll_asked: Option<Instant>,
    /// The newest message id each recent poll knew of, oldest first: the
    /// next poll asks for ids above the front.
    tail_marks: VecDeque<i64>,
    /// Who is online on the other nodes.
    roster: Roster,
    /// When this node next tells the others it is alive.
    next_heartbeat: Instant,
}

impl NodeLink {
    /// The link over `bus`, whose other nodes' messages arrive on `events`,
    /// for a node that started when `start_id` was the newest message id.
    /// This node's failed log-ins go to the others from now on.
    #[cfg(feature = "cluster")]
    pub fn new(
        bus: crate::cluster::bus::Bus,
        events: Receiver<Envelope>,
        start_id: i64,
        shared: Arc<Shared>,
    ) -> NodeLink {
        shared.login_throttle.share_failures(bus.failure_sink());
        NodeLink {
            bus,
            events,
            sequencer: Sequencer::new(start_id),
            outgoing: Vec::new(),
            shared,
            next_tail_poll: Instant::now() + TAIL_POLL,
            tail_poll_asked: None,
            tail_marks: VecDeque::from([start_id]),
            roster: Roster::default(),
            // At once: the other nodes learn of this one, and it of them.
            next_heartbeat: Instant::now(),
        }
    }
}

impl NodeLink {
    /// Publishes an event for the other nodes (never waits).
    fn publish(&self, _event: Event) {
        #[cfg(feature = "cluster")]
        self.bus.publish(_event);
    }

    /// An attempt this node admitted counts on the others too.
    pub(super) fn share_auth_attempt(&self, attempt: AuthAttempt, addr: IpAddr) {
        let sign_up = matches!(attempt, AuthAttempt::SignUp);
        self.publish(Event::AuthAttempt { sign_up, addr });
    }

    /// This node's id on the bus.
    fn node(&self) -> &str {
        #[cfg(feature = "cluster")]
        return self.bus.node();
        #[cfg(not(feature = "cluster"))]
        ""
    }

    /// When the store is next asked for rooms' newest messages.
    fn next_tail_poll(&self, now: Instant) -> Instant {
        match self.tail_poll_asked {
            Some(asked) if now < asked + TAIL_POLL_TIMEOUT => asked + TAIL_POLL_TIMEOUT,
            _ => self.next_tail_poll,
        }
    }
}

impl Reactor {
    /// Sends a push made on this node: to the other nodes, and to this
    /// node's connections (a stored message in its room's order).
    pub(super) fn route_push(
        &mut self,
        requester: Token,
        push: Push,
        req_id: Option<&ReqId>,
        touched: &mut Vec<Token>,
    ) {
        match &mut self.cluster {
            None => self.fan_out(requester, push, req_id, touched),
            Some(link) => {
                if !push.this_node_only {
                    link.outgoing.push(Push {
                        to: push.to.clone(),
                        msg: push.msg.clone(),
                        answers_request: false,
                        order: push.order,
                        this_node_only: false,
                    });
                }
                let held = Held {
                    push,
                    requester,
                    req_id: req_id.cloned(),
                };
                self.in_room_order(held, touched);
            }
        }
    }

    /// Publishes the pushes this pass made, as one bus message.
    pub(super) fn publish_pushes(&mut self) {
        #[cfg(feature = "cluster")]
        if let Some(link) = &mut self.cluster {
            link.bus.publish_pushes(std::mem::take(&mut link.outgoing));
        }
    }

    /// A token revoked on this node is revoked on the others too.
    pub(super) fn publish_revoke(&self, _revoke: &Revoke) {
        #[cfg(feature = "cluster")]
        if let Some(link) = &self.cluster {
            link.bus
                .publish_revoke(_revoke.user_id, _revoke.token_hash, &_revoke.notice);
        }
    }

    /// Delivers a push now, or (a stored message) once its room's earlier
    /// messages were.
    fn in_room_order(&mut self, held: Held, touched: &mut Vec<Token>) {
        let ready = match (&mut self.cluster, held.push.order) {
            (Some(link), Some(order)) => link
                .sequencer
                .offer(order.room_id, order.seq, held, Instant::now()),
            _ => vec![held],
        };
        for held in ready {
            self.fan_out(held.requester, held.push, held.req_id.as_ref(), touched);
        }
    }

    /// Delivers what the other nodes published, then serves the
    /// connections it touched.
    pub(super) fn drain_bus(&mut self) {
        let Some(link) = &self.cluster else { return };
        let envelopes: Vec<Envelope> = link.events.try_iter().collect();
        if envelopes.is_empty() {
            return;
        }
        let mut touched = Vec::new();
        let now = Instant::now();
        for Envelope { node, events } in envelopes {
            for event in events {
                self.bus_event(&node, event, now, &mut touched);
            }
        }
        self.serve_touched(touched);
    }

    /// One event another node (`node`) published.
    fn bus_event(&mut self, node: &str, event: Event, now: Instant, touched: &mut Vec<Token>) {
        match event {
            Event::Push { to, msg, room_seq } => {
                let Some(msg) = msg.to_outgoing() else { return };
                let mut push = Push::notice(to.into(), msg);
                push.order = Event::order(room_seq);
                let held = Held {
                    push,
                    requester: NO_REQUESTER,
                    req_id: None,
                };
                self.in_room_order(held, touched);
            }
            Event::LoginFailure { login, addr } => {
                if let Some(link) = &self.cluster {
                    link.shared.login_throttle.record_remote_failure(&login, addr);
                }
            }
            Event::Revoke {
                user_id,
                token_hash,
                notice,
            } => {
                let (Some(notice), Ok(hash)) = (notice.to_outgoing(), hex::decode(&token_hash)) else {
                    return;
                };
                let Ok(token_hash) = <[u8; 32]>::try_from(hash) else {
                    return;
                };
                let revoke = Revoke {
                    user_id,
                    token_hash,
                    notice,
                };
                self.revoke(NO_REQUESTER, revoke, touched);
            }
            Event::AuthAttempt { sign_up, addr } => {
                let attempt = if sign_up {
                    AuthAttempt::SignUp
                } else {
                    AuthAttempt::LogIn
                };
                self.auth_gate.record(attempt, addr);
            }
            Event::Presence { user_id, online } => {
                let Some(link) = &mut self.cluster else { return };
                if let Some(change) = link.roster.user(node, user_id, online, now) {
                    self.presence_elsewhere(vec![change]);
                }
            }
            Event::Heartbeat { users, digest } => {
                let Some(link) = &mut self.cluster else { return };
                if link.roster.heartbeat(node, users, digest, now) == Heard::OutOfStep {
                    log::debug!("asking node {node} who is online there");
                    link.publish(Event::RosterWanted {
                        node: node.to_owned(),
                    });
                }
            }
            Event::RosterWanted { node: asked } => {
                let Some(link) = &self.cluster else { return };
                if asked == link.node() {
                    let (users, _) = self.presence.here();
                    for part in wire::roster(&users) {
                        link.publish(part);
                    }
                }
            }
            Event::Roster { users, first } => {
                let Some(link) = &mut self.cluster else { return };
                let changes = if first {
                    link.roster.replace(node, users, now)
                } else {
                    link.roster.add(node, users, now)
                };
                self.presence_elsewhere(changes);
            }
            Event::Leaving => {
                let Some(link) = &mut self.cluster else { return };
                log::info!("node {node} is stopping");
                let changes = link.roster.forget(node);
                self.presence_elsewhere(changes);
            }
        }
    }

    /// Users came or went on other nodes: where that makes them come or go
    /// for the whole cluster, this node's connections are told.
    fn presence_elsewhere(&mut self, changes: Vec<(i64, bool)>) {
        for (user_id, online) in changes {
            if self.presence.elsewhere(user_id, online) {
                self.announce_presence(user_id, online);
            }
        }
    }

    /// A user's first connection on this node logged in, or the last went:
    /// the other nodes are told.
    pub(super) fn tell_nodes_presence(&self, user_id: i64, online: bool) {
        if let Some(link) = &self.cluster {
            link.publish(Event::Presence { user_id, online });
        }
    }

    /// Every [`HEARTBEAT`], tells the other nodes this one is alive (with a
    /// digest of its online users) and forgets those silent too long.
    pub(super) fn heartbeat(&mut self) {
        let Some(link) = &mut self.cluster else { return };
        let now = Instant::now();
        if now < link.next_heartbeat {
            return;
        }
        link.next_heartbeat = now + HEARTBEAT;
        let (users, digest) = self.presence.here();
        link.publish(Event::Heartbeat {
            users: users.len() as u64,
            digest,
        });
        let gone = link.roster.expire(now);
        self.presence_elsewhere(gone);
    }

    /// This node is stopping: the others forget its users at once.
    pub(super) fn leave_cluster(&self) {
        if let Some(link) = &self.cluster {
            link.publish(Event::Leaving);
        }
    }

    /// Asks the store for the gaps that waited long enough.
    pub(super) fn ask_for_gaps(&mut self) {
        let Some(link) = &mut self.cluster else { return };
        for gap in link.sequencer.due_gaps(Instant::now()) {
            log::debug!(
                "room {}: messages {}..{} did not come over the bus; reading them from the store",
                gap.room_id,
                gap.after + 1,
                gap.before - 1
            );
            self.write(Task::FillGap(gap));
        }
    }

    /// Every [`TAIL_POLL`], asks the store which rooms have new messages.
    pub(super) fn poll_room_tails(&mut self) {
        let Some(link) = &mut self.cluster else { return };
        let now = Instant::now();
        if now < link.next_tail_poll(now) {
            return;
        }
        link.tail_poll_asked = Some(now);
        link.next_tail_poll = now + TAIL_POLL;
        let after_id = link.tail_marks.front().copied().unwrap_or(0);
        self.write(Task::RoomTails { after_id });
    }

    /// The store's answers about rooms' messages.
    pub(super) fn rooms_news(&mut self, news: RoomsNews, touched: &mut Vec<Token>) {
        match news {
            RoomsNews::Filled(filled) => self.gap_filled(filled, touched),
            RoomsNews::Tails(tails) => self.room_tails(tails),
        }
    }

    /// Rooms' newest messages: those this node has not delivered are
    /// waited for, then read from the store.
    fn room_tails(&mut self, tails: Vec<RoomTail>) {
        let Some(link) = &mut self.cluster else { return };
        link.tail_poll_asked = None;
        let now = Instant::now();
        let newest = tails.iter().map(|t| t.id).max();
        for tail in tails {
            link.sequencer.expect(tail.room_id, tail.seq, now);
        }
        let last = link.tail_marks.back().copied().unwrap_or(0);
        link.tail_marks.push_back(newest.unwrap_or(last).max(last));
        while link.tail_marks.len() > TAIL_POLLS_OVERLAP {
            link.tail_marks.pop_front();
        }
    }

    /// The store's answer to a gap: delivered in place of what did not come.
    fn gap_filled(&mut self, filled: FilledGap, touched: &mut Vec<Token>) {
        let Some(link) = &mut self.cluster else { return };
        let found = filled
            .pushes
            .into_iter()
            .filter_map(|push| {
                let seq = push.order?.seq;
                Some((
                    seq,
                    Held {
                        push,
                        requester: NO_REQUESTER,
                        req_id: None,
                    },
                ))
            })
            .collect();
        let ready = link.sequencer.filled(filled.gap, found, Instant::now());
        for held in ready {
            self.fan_out(held.requester, held.push, held.req_id.as_ref(), touched);
        }
    }

    /// When the next gap falls due, the store is next asked for rooms'
    /// newest messages, or the next heartbeat is due.
    pub(super) fn next_cluster_due(&self) -> Option<Instant> {
        let link = self.cluster.as_ref()?;
        let poll = link.next_tail_poll(Instant::now());
        [link.sequencer.next_due(), Some(poll), Some(link.next_heartbeat)]
            .into_iter()
            .flatten()
            .min()
    }
}
