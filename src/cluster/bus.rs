//! The bus between the nodes of a cluster: a NATS connection on a thread of
//! its own.
//!
//! The reactor hands it what its connections were told ([`Bus::publish`]
//! never waits: when the bus falls behind, what does not fit is dropped and
//! counted, and stored messages come back from the store as gaps); what the
//! other nodes publish comes back on a channel, with a wake of the reactor.
//! All nodes of a cluster publish to and listen on one subject under their
//! prefix (`<prefix>.events`), so two clusters can share a NATS server.
//! The client reconnects by itself: what is published while the bus is down
//! is lost, and the sequencer fills the gaps that leaves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use crossbeam_channel::{Sender, TrySendError};
use futures_util::StreamExt;
use mio::Waker;

use super::wire::{self, Envelope, Event, WireMessage};
use crate::job::Push;
use crate::protocol::Outgoing;

/// What waits for the bus before more is dropped.
const OUTBOX: usize = 65_536;
/// How long a stopping node waits to publish what it still holds.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);
/// How long the first connection may take before the server gives up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the bus is.
#[derive(Clone, Debug)]
pub struct BusSettings {
    /// `nats://host:port`
    pub url: String,
    /// The cluster's subject prefix.
    pub prefix: String,
}

/// What the reactor gives the bus thread to publish (encoded there, off
/// the reactor's thread).
enum Outbound {
    /// What one pass of the reactor pushed, in order: one bus message.
    Pushes(Vec<Push>),
    Revoke {
        user_id: i64,
        token_hash: [u8; 32],
        notice: Outgoing,
    },
    LoginFailure {
        login: String,
        addr: std::net::IpAddr,
    },
    /// An event made whole on the reactor's side (presence, heartbeats).
    Event(Event),
}

/// The bus, as the reactor holds it.
pub struct Bus {
    node: String,
    outbox: tokio::sync::mpsc::Sender<Outbound>,
    dropped: Arc<AtomicU64>,
    /// Tells the thread to publish what is queued and stop (the log-in
    /// throttle holds a sender of the outbox too, so its closing cannot).
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Bus {
    /// Connects to the bus (failing if it does not answer in time) and
    /// starts its thread. What other nodes publish goes to `inbox`, and
    /// `waker` wakes the reactor for it.
    pub fn start(settings: BusSettings, inbox: Sender<Envelope>, waker: Arc<Waker>) -> anyhow::Result<Bus> {
        let node = node_id();
        let (outbox, outgoing) = tokio::sync::mpsc::channel(OUTBOX);
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (started_tx, started_rx) = crossbeam_channel::bounded(1);
        let dropped = Arc::new(AtomicU64::new(0));
        let thread_node = node.clone();
        let thread = std::thread::Builder::new()
            .name("parley-bus".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = started_tx.send(Err(anyhow::anyhow!("starting the bus runtime: {e}")));
                        return;
                    }
                };
                runtime.block_on(run(
                    settings,
                    thread_node,
                    outgoing,
                    stopped,
                    inbox,
                    waker,
                    started_tx,
                ));
            })
            .context("spawning the bus thread")?;
        match started_rx.recv() {
            Ok(Ok(())) => Ok(Bus {
                node,
                outbox,
                dropped,
                stop: Some(stop),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                anyhow::bail!("the bus thread stopped while connecting")
            }
        }
    }

    /// This node's id on the bus.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Publishes, as one bus message, the pushes one pass of the reactor
    /// made on this node (never waits).
    pub fn publish_pushes(&self, pushes: Vec<Push>) {
        if !pushes.is_empty() {
            self.send(Outbound::Pushes(pushes));
        }
    }

    /// Publishes a revoked token (never waits).
    pub fn publish_revoke(&self, user_id: i64, token_hash: [u8; 32], notice: &Outgoing) {
        self.send(Outbound::Revoke {
            user_id,
            token_hash,
            notice: notice.clone(),
        });
    }

    /// Publishes an event as it is (never waits).
    pub fn publish(&self, event: Event) {
        self.send(Outbound::Event(event));
    }

    /// Where this node's failed log-ins go for the other nodes (for the
    /// log-in throttle, whose threads call it).
    pub fn failure_sink(&self) -> crate::throttle::FailureSink {
        let outbox = self.outbox.clone();
        let dropped = self.dropped.clone();
        Box::new(move |login: &str, addr| {
            let failure = Outbound::LoginFailure {
                login: login.to_owned(),
                addr,
            };
            if outbox.try_send(failure).is_err() {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
        })
    }

    fn send(&self, outbound: Outbound) {
        if self.outbox.try_send(outbound).is_err() && self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            log::warn!("the bus is behind: dropping what does not fit (stored messages come back as gaps)");
        }
    }

    /// What could not be published because the bus fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A random id for this node's run.
fn node_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = std::process::id()
            .to_le_bytes()
            .repeat(2)
            .try_into()
            .unwrap_or_default();
    }
    hex::encode(bytes)
}

/// The bus thread: publishes what the reactor hands it, and hands the
/// reactor what other nodes publish, until the reactor's side closes.
async fn run(
    settings: BusSettings,
    node: String,
    mut outgoing: tokio::sync::mpsc::Receiver<Outbound>,
    mut stopped: tokio::sync::oneshot::Receiver<()>,
    inbox: Sender<Envelope>,
    waker: Arc<Waker>,
    started: crossbeam_channel::Sender<anyhow::Result<()>>,
) {
    let subject = format!("{}.events", settings.prefix);
    let connecting = async_nats::ConnectOptions::new()
        .name(format!("parleyd {node}"))
        .connection_timeout(CONNECT_TIMEOUT)
        .connect(settings.url.as_str());
    let client = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(client)) => client,
        Ok(Err(e)) => {
            let _ = started.send(Err(anyhow::anyhow!(
                "connecting to the bus at {}: {e}",
                settings.url
            )));
            return;
        }
        Err(_) => {
            let _ = started.send(Err(anyhow::anyhow!("the bus at {} did not answer", settings.url)));
            return;
        }
    };
    let mut subscription = match client.subscribe(subject.clone()).await {
        Ok(subscription) => subscription,
        Err(e) => {
            let _ = started.send(Err(anyhow::anyhow!("subscribing to {subject}: {e}")));
            return;
        }
    };
    // The server has taken the subscription once it answers a ping: from
    // then on, nothing another node publishes passes this one by.
    if let Err(e) = client.flush().await {
        let _ = started.send(Err(anyhow::anyhow!("subscribing to {subject}: {e}")));
        return;
    }
    let _ = started.send(Ok(()));
    log::info!("on the bus at {} as node {node} ({subject})", settings.url);
    let mut inbox_full = false;
    let publish = |outbound: Outbound| {
        let client = client.clone();
        let subject = subject.clone();
        let node = node.clone();
        async move {
            let events = to_events(outbound);
            if events.is_empty() {
                return;
            }
            let payload = wire::encode(&Envelope { node, events });
            if let Err(e) = client.publish(subject, payload.into()).await {
                log::debug!("publishing on the bus failed: {e}");
            }
        }
    };
    loop {
        tokio::select! {
            _ = &mut stopped => {
                // What the node said before stopping still goes out, unless
                // the bus is away for longer than a shutdown may wait.
                let rest = async {
                    while let Ok(outbound) = outgoing.try_recv() {
                        publish(outbound).await;
                    }
                    let _ = client.flush().await;
                };
                let _ = tokio::time::timeout(SHUTDOWN_FLUSH, rest).await;
                return;
            }
            outbound = outgoing.recv() => {
                let Some(outbound) = outbound else { break };
                publish(outbound).await;
            }
            message = subscription.next() => {
                let Some(message) = message else {
                    log::error!("the bus subscription ended");
                    break;
                };
                let Some(envelope) = wire::decode(&message.payload) else {
                    log::debug!("ignored a message on {subject} that is not Parley's");
                    continue;
                };
                if envelope.node == node {
                    continue;
                }
                match inbox.try_send(envelope) {
                    Ok(()) => {
                        inbox_full = false;
                        let _ = waker.wake();
                    }
                    Err(TrySendError::Full(_)) if !inbox_full => {
                        inbox_full = true;
                        log::warn!("the reactor is behind the bus: dropping what other nodes publish");
                    }
                    Err(TrySendError::Full(_)) => {}
                    Err(TrySendError::Disconnected(_)) => break,
                }
            }
        }
    }
}

fn to_events(outbound: Outbound) -> Vec<Event> {
    match outbound {
        Outbound::Pushes(pushes) => pushes
            .into_iter()
            .filter_map(|push| {
                Some(Event::Push {
                    to: push.to.to_vec(),
                    msg: WireMessage::from_outgoing(&push.msg)?,
                    room_seq: push.order.map(|o| (o.room_id, o.seq)),
                })
            })
            .collect(),
        Outbound::Revoke {
            user_id,
            token_hash,
            notice,
        } => WireMessage::from_outgoing(&notice)
            .map(|notice| Event::Revoke {
                user_id,
                token_hash: hex::encode(token_hash),
                notice,
            })
            .into_iter()
            .collect(),
        Outbound::LoginFailure { login, addr } => vec![Event::LoginFailure { login, addr }],
        Outbound::Event(event) => vec![event],
    }
}
