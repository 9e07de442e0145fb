//! The bridge for ngobrol clients: they talk to their server only through a
//! RabbitMQ broker, and this makes `parleyd` that server (`--ngobrol-amqp`).
//!
//! It runs on its own thread (`parley-ngobrol`) with lapin, the maintained
//! AMQP client, on smol; no async runtime reaches the core. Every ngobrol
//! user speaks through a local connection to the reactor (`crate::local`),
//! so handlers, limits and pushes are exactly those of TCP clients.
//!
//! - [`wire`]: the ngobrol format (pure);
//! - `session`: a Parley connection the bridge speaks on;
//! - `bridge`: each method as Parley requests, and pushes back.
//!
//! Requests are consumed from the durable `ngobrol` queue (prefetch 64)
//! and acknowledged once served, so a request in flight when the broker
//! goes away is served again (at least once). One user's requests are
//! served one at a time, in order; different users' side by side. Replies
//! and pushes are published persistent, with publisher confirms, in order;
//! what waits while the broker is away is published after reconnecting.

mod bridge;
mod session;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use smol::channel::{Receiver, Sender};
use smol::stream::StreamExt;

use crate::local::LocalConnector;
use bridge::Bridge;

/// Requests taken from the broker before earlier ones are acknowledged.
const PREFETCH: u16 = 64;

/// How long to wait before connecting to the broker again.
const RECONNECT_EVERY: Duration = Duration::from_secs(1);

/// AMQP's delivery mode for messages the broker keeps on disk.
const PERSISTENT: u8 = 2;

/// Replies and pushes waiting for the broker. Beyond it, users' tasks wait,
/// and a session that cannot pass its pushes on stops reading until the
/// server cuts it as a slow reader: memory stays bounded in a long outage.
const OUTBOX: usize = 10_000;

/// A user's task ends after this long without requests (a request with a
/// made-up username must not leave a task behind for good).
const USER_IDLE: Duration = Duration::from_secs(30);

/// Above this many users' tasks, the ended ones are forgotten.
const PRUNE_WORKERS_ABOVE: usize = 1024;

/// What the bridge sends the broker, in order.
enum Out {
    /// Declare a user's queue (before the log-in reply that tells them to consume it).
    Declare(String),
    Publish {
        queue: String,
        body: Vec<u8>,
    },
}

/// The bridge's outgoing messages, published in order by one task.
#[derive(Clone)]
pub struct Outbox(Sender<Out>);

impl Outbox {
    async fn publish(&self, queue: String, body: Vec<u8>) {
        let _ = self.0.send(Out::Publish { queue, body }).await;
    }

    async fn declare(&self, queue: String) {
        let _ = self.0.send(Out::Declare(queue)).await;
    }
}

/// Where the bridge finds its broker.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `amqp://user:pass@host:port/vhost`.
    pub url: String,
    /// The request queue (ngobrol's is `ngobrol`; tests use their own).
    pub queue: String,
}

/// A running bridge; stops when [`Running::stop`] is called.
pub struct Running {
    stop: Arc<AtomicBool>,
    wake: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    /// Stops taking requests and ends the bridge's thread.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.wake.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the bridge on its own thread.
pub fn start(settings: Settings, connector: LocalConnector) -> std::io::Result<Running> {
    let stop = Arc::new(AtomicBool::new(false));
    let (wake, stopped) = smol::channel::bounded(1);
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("parley-ngobrol".into())
        .spawn(move || smol::block_on(run(settings, connector, flag, stopped)))?;
    Ok(Running {
        stop,
        wake,
        thread: Some(thread),
    })
}

/// Connects, serves until the connection fails, and connects again, until stopped.
async fn run(settings: Settings, connector: LocalConnector, stop: Arc<AtomicBool>, stopped: Receiver<()>) {
    let (out_tx, out_rx) = smol::channel::bounded(OUTBOX);
    let bridge = Arc::new(Bridge::new(connector, Outbox(out_tx)));
    let mut workers: HashMap<String, Sender<(wire::Request, Delivery)>> = HashMap::new();
    // A message whose publishing failed: sent first after reconnecting.
    let mut held: Option<Out> = None;
    let mut reported_down = false;
    while !stop.load(Ordering::SeqCst) {
        let served = async {
            let connection = Connection::connect(&settings.url, ConnectionProperties::default()).await?;
            log::info!(
                "ngobrol: connected to the broker; serving queue {:?}",
                settings.queue
            );
            reported_down = false;
            serve(&connection, &settings, &bridge, &mut workers, &out_rx, &mut held).await
        };
        let ended = async {
            let _ = stopped.recv().await;
            Ok(())
        };
        match smol::future::or(served, ended).await {
            Err(e) if !reported_down => {
                log::warn!(
                    "ngobrol: the broker at {} is not reachable: {e}; retrying every second",
                    redact(&settings.url)
                );
                reported_down = true;
            }
            _ => {}
        }
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let pause = async {
            smol::Timer::after(RECONNECT_EVERY).await;
        };
        let ended = async {
            let _ = stopped.recv().await;
        };
        smol::future::or(pause, ended).await;
    }
    log::info!("ngobrol: bridge stopped");
}

/// The URL without its password, for the log.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => format!("{}://…@{}", &url[..scheme], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Serves one broker connection: takes requests, publishes what goes out.
async fn serve(
    connection: &Connection,
    settings: &Settings,
    bridge: &Arc<Bridge>,
    workers: &mut HashMap<String, Sender<(wire::Request, Delivery)>>,
    out: &Receiver<Out>,
    held: &mut Option<Out>,
) -> lapin::Result<()> {
    let requests = connection.create_channel().await?;
    // Exactly as the ngobrol client declares it: any other argument would
    // make the client's own declaration fail.
    requests
        .queue_declare(
            settings.queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    requests.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
    let mut consumer = requests
        .basic_consume(
            settings.queue.as_str().into(),
            "parleyd".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let replies = connection.create_channel().await?;
    replies.confirm_select(ConfirmSelectOptions::default()).await?;
    let publishing = publish(&replies, out, held);
    let consuming = async {
        while let Some(delivery) = consumer.next().await {
            take(bridge, workers, delivery?).await;
        }
        Err(lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
            lapin::ConnectionState::Closed,
        )))
    };
    smol::future::or(publishing, consuming).await
}

/// Hands a request to its user's task (made on first use); a request that
/// cannot be read is answered, where it can be, and acknowledged.
async fn take(
    bridge: &Arc<Bridge>,
    workers: &mut HashMap<String, Sender<(wire::Request, Delivery)>>,
    delivery: Delivery,
) {
    let request = match wire::parse(&delivery.data) {
        Ok(request) => request,
        Err(bad) => {
            log::info!(
                "ngobrol: unreadable request ({} bytes): {}",
                delivery.data.len(),
                bad.why
            );
            if let Some(queue) = bad.reply_to {
                bridge
                    .outbox_publish(queue, wire::error_reply(&bad.reply_method, &bad.why))
                    .await;
            }
            let _ = delivery.ack(BasicAckOptions::default()).await;
            return;
        }
    };
    if workers.len() > PRUNE_WORKERS_ABOVE {
        workers.retain(|_, tx| !tx.is_closed());
    }
    let key = request.username().to_lowercase();
    let mut item = (request, delivery);
    loop {
        let worker = workers.entry(key.clone()).or_insert_with(|| {
            let (tx, rx) = smol::channel::unbounded();
            smol::spawn(serve_user(bridge.clone(), rx)).detach();
            tx
        });
        match worker.send(item).await {
            Ok(()) => return,
            // The user's task ended (idle) just now: start another.
            Err(smol::channel::SendError(back)) => {
                workers.remove(&key);
                item = back;
            }
        }
    }
}

/// One user's requests, one at a time, in arrival order; ends when idle.
async fn serve_user(bridge: Arc<Bridge>, requests: Receiver<(wire::Request, Delivery)>) {
    loop {
        let next = async { requests.recv().await.ok() };
        let idle = async {
            smol::Timer::after(USER_IDLE).await;
            None
        };
        match smol::future::or(next, idle).await {
            Some((request, delivery)) => serve_one(&bridge, request, delivery).await,
            None => break,
        }
    }
    // Closed first, so a request sent from now on comes back to the sender;
    // what arrived before is still served.
    requests.close();
    while let Ok((request, delivery)) = requests.try_recv() {
        serve_one(&bridge, request, delivery).await;
    }
}

async fn serve_one(bridge: &Arc<Bridge>, request: wire::Request, delivery: Delivery) {
    bridge.serve(request).await;
    if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
        log::debug!("ngobrol: acknowledging failed (the broker will deliver it again): {e}");
    }
}

/// Publishes what goes out, in order, each confirmed by the broker; a
/// message that fails is held for the next connection.
async fn publish(channel: &Channel, out: &Receiver<Out>, held: &mut Option<Out>) -> lapin::Result<()> {
    loop {
        let next = match held.take() {
            Some(next) => next,
            None => match out.recv().await {
                Ok(next) => next,
                Err(_) => return Ok(()),
            },
        };
        let sent = match &next {
            Out::Declare(queue) => channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map(|_| ()),
            Out::Publish { queue, body } => {
                let properties = BasicProperties::default().with_delivery_mode(PERSISTENT);
                match channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        body,
                        properties,
                    )
                    .await
                {
                    Ok(confirm) => confirm.await.map(|_| ()),
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(e) = sent {
            *held = Some(next);
            return Err(e);
        }
    }
}
