//! Online backups: `parleyd backup` taken while a server is under write
//! load, restored into a new data directory, and served again.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use crate::util::{assert_type, start_in, start_with};

#[test]
fn a_backup_taken_under_write_load_restores_every_acknowledged_message() {
    if crate::util::skipped_on_postgres("parleyd backup copies the SQLite store") {
        return;
    }
    let server = start_with(|c| {
        c.msg_rate_per_sec = 1e9;
        c.msg_burst = 1_000_000_000;
        c.durability = parley::config::Durability::Normal;
    });
    let mut alice = server.user("alice");
    let room = alice.new_room("kept", "DB_GLOBAL_CHAT");
    let contents: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i + 1; 50_000 + i as usize]).collect();
    let mut file_ids = Vec::new();
    for (i, data) in contents.iter().enumerate() {
        let msg = alice
            .client
            .upload(room, &format!("f{i}.bin"), data, None)
            .unwrap();
        assert_type(&msg, "RQ_MSG");
        file_ids.push(msg["message_id"].as_i64().unwrap());
    }

    // Alice writes as fast as she is acknowledged, all through the backup.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop) = (acked.clone(), stop.clone());
        let mut client = server.connect();
        assert_type(&client.resume(&alice.token).unwrap(), "RQ_TOKEN");
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let reply = client
                    .request(json!({"type": "RQ_MSG", "room_id": room, "message": format!("load {i}")}))
                    .unwrap();
                assert_type(&reply, "RQ_MSG");
                acked.lock().unwrap().push(reply["message_id"].as_i64().unwrap());
            }
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let before: HashSet<i64> = acked.lock().unwrap().iter().copied().collect();
    assert!(before.len() > 10, "the load did not start");
    let backups = tempfile::tempdir().unwrap();
    let archive = backups.path().join("backup.tar");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_parleyd"))
        .arg("backup")
        .arg("--data")
        .arg(server.dir.path().join("data"))
        .arg("--to")
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("3 files"), "{said}");
    std::thread::sleep(Duration::from_millis(200));
    let during = acked.lock().unwrap().len();
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    assert!(during > before.len(), "writes stopped during the backup");
    drop(alice);
    drop(server);

    // Restore into an empty directory and serve it.
    let restored = tempfile::tempdir().unwrap();
    let data = restored.path().join("data");
    std::fs::create_dir(&data).unwrap();
    tar::Archive::new(std::fs::File::open(&archive).unwrap())
        .unpack(&data)
        .unwrap();
    let server = start_in(restored, |_| {});
    let mut c = server.connect();
    assert_type(&c.log_in("alice", "pw-alice").unwrap(), "RQ_TOKEN");
    // The newest page, then older pages until one comes back short.
    let mut found = HashSet::new();
    let mut page = c
        .request(json!({"type": "RQ_GET_NEW_MSGS", "room_id": room, "after_id": 0, "count": 500}))
        .unwrap();
    loop {
        let ids: Vec<i64> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["message_id"].as_i64().unwrap())
            .collect();
        found.extend(ids.iter().copied());
        if ids.len() < 500 {
            break;
        }
        let oldest = *ids.iter().min().unwrap();
        page = c
            .request(json!({"type": "RQ_OLD_MSGS", "room_id": room, "before_id": oldest, "count": 500}))
            .unwrap();
    }
    let lost: Vec<_> = before.iter().filter(|id| !found.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged messages lost: {lost:?}",
        lost.len()
    );
    for (id, data) in file_ids.iter().zip(&contents) {
        let (_, got) = c.download(room, *id, None).unwrap();
        assert_eq!(&got, data, "file of message {id}");
    }
}
