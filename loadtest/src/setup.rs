//! Before measuring: accounts, tokens, rooms and stored history, made with
//! the parley crate's blocking client on a few threads. Nothing here is timed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use anyhow::{anyhow, bail, Context, Result};
use parley::client::{password_digest, Client};
use parley::client_stream::Connector;
use parley::protocol::Kind;
use serde_json::json;

use crate::wire::SEARCH_WORDS;

/// The password of every load-test account.
pub const PASSWORD: &str = "parley-load-password";

/// An account made for the run.
#[derive(Clone, Debug)]
pub struct Account {
    pub login: String,
    pub token: String,
}

/// A room made for the run, with the indexes of its members.
#[derive(Clone, Debug)]
pub struct RoomPlan {
    pub id: i64,
    pub name: String,
    pub members: Vec<usize>,
}

/// A short run id, so several runs can share a server without clashing.
pub fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32);
    format!("{:05x}", nanos & 0xfffff)
}

/// Runs `work(i)` for `0..n` on a few threads; fails if any call fails.
fn parallel<T: Send>(n: usize, threads: usize, work: impl Fn(usize) -> Result<T> + Sync) -> Result<Vec<T>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<T>>> = Mutex::new((0..n).map(|_| None).collect());
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                match work(i) {
                    Ok(v) => results.lock().expect("results lock")[i] = Some(v),
                    Err(e) => {
                        failure.lock().expect("failure lock").get_or_insert(e);
                        next.store(n, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().expect("failure lock") {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .expect("results lock")
        .into_iter()
        .flatten()
        .collect())
}

/// Signs up `n` accounts.
pub fn accounts(connector: &Connector, target: &str, run: &str, n: usize) -> Result<Vec<Account>> {
    let digest = password_digest(PASSWORD);
    parallel(n, 8, |i| {
        let login = format!("ld{run}u{i}");
        let mut c =
            Client::connect_with(connector, target).with_context(|| format!("connecting to {target}"))?;
        let reply = c.request(json!({"type": Kind::SignUp.name(), "login": login, "pass": digest}))?;
        let token = reply["token"]
            .as_str()
            .ok_or_else(|| anyhow!("signing up {login}: {reply}"))?
            .to_owned();
        Ok(Account { login, token })
    })
}

/// Makes rooms of `room_size` from consecutive accounts: the first member
/// creates each room and the others join it.
pub fn rooms(
    connector: &Connector,
    target: &str,
    run: &str,
    accounts: &[Account],
    room_size: usize,
) -> Result<Vec<RoomPlan>> {
    let room_size = room_size.max(1);
    let count = accounts.len().div_ceil(room_size);
    parallel(count, 8, |r| {
        let members: Vec<usize> = (r * room_size..((r + 1) * room_size).min(accounts.len())).collect();
        let name = format!("ld{run}r{r}");
        let mut owner = Client::connect_with(connector, target)?;
        owner.resume(&accounts[members[0]].token)?;
        let reply = owner.request(json!({"type": Kind::NewRoom.name(), "name": name}))?;
        let id = reply["id"]
            .as_i64()
            .ok_or_else(|| anyhow!("creating room {name}: {reply}"))?;
        for &m in &members[1..] {
            let mut c = Client::connect_with(connector, target)?;
            c.resume(&accounts[m].token)?;
            let reply = c.request(json!({"type": Kind::JoinRoom.name(), "room_id": id}))?;
            if reply["type"] != Kind::JoinRoom.name() {
                bail!("joining room {name}: {reply}");
            }
        }
        Ok(RoomPlan { id, name, members })
    })
}

/// Stores `per_room` messages in each room, for the history scenario.
pub fn history(
    connector: &Connector,
    target: &str,
    accounts: &[Account],
    rooms: &[RoomPlan],
    per_room: usize,
) -> Result<()> {
    // Many rooms at once: the server commits their messages in shared batches.
    parallel(rooms.len(), 64, |r| {
        let room = &rooms[r];
        let mut c = Client::connect_with(connector, target)?;
        c.resume(&accounts[room.members[0]].token)?;
        for i in 0..per_room {
            let text = format!(
                "{} {} message {i}",
                SEARCH_WORDS[i % SEARCH_WORDS.len()],
                SEARCH_WORDS[(i / 7) % SEARCH_WORDS.len()]
            );
            let reply = c.request(json!({"type": Kind::Msg.name(), "room_id": room.id, "message": text}))?;
            if reply["type"] != Kind::Msg.name() {
                bail!(
                    "storing history in {}: {reply} (is the server's message rate limit raised?)",
                    room.name
                );
            }
        }
        Ok(())
    })?;
    Ok(())
}
