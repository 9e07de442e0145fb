//! TLS: certificates made at test time (rcgen), a real rustls handshake
//! against the reactor, plaintext clients beside it, and what happens to
//! clients that do not speak TLS, stall, or outlive a certificate.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use parley::client::Client;
use parley::client_stream::Connector;
use serde_json::json;

use crate::cli::Cli;
use crate::util::{
    assert_type, closed_by_server, spawn_parleyd_configured, start_with, wait_until, Stop, TestServer,
};

/// A CA, and a server certificate it signed for 127.0.0.1 and localhost,
/// written as PEM files into `dir` (ca.pem, cert.pem, key.pem).
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path, name: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let pki = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

/// A server speaking TLS with a certificate made for this test (`adjust`
/// changes further settings); the directory holding the PEM files goes
/// with it.
fn tls_server(adjust: impl FnOnce(&mut parley::Config)) -> (TestServer, Pki, tempfile::TempDir) {
    let certs = tempfile::tempdir().unwrap();
    let pki = make_pki(certs.path(), "a");
    let (cert, key) = (pki.cert.clone(), pki.key.clone());
    let server = start_with(move |c| {
        c.tls_cert = Some(cert);
        c.tls_key = Some(key);
        adjust(c);
    });
    (server, pki, certs)
}

fn tls_client(addr: &str, ca: &Path) -> std::io::Result<Client> {
    let connector = Connector::tls(addr, ca).map_err(std::io::Error::other)?;
    Client::connect_with(&connector, addr)
}

/// Users on TLS and on the plaintext listener beside it chat in one room;
/// a file crosses TLS byte for byte both ways.
#[test]
fn chat_and_files_over_tls_with_plaintext_beside_it() {
    let (server, pki, _certs) = tls_server(|c| {
        c.listen_plain = Some("127.0.0.1:0".parse().unwrap());
        c.msg_burst = 1_000_000;
        c.msg_rate_per_sec = 1e6;
    });
    let addr = server.addr.to_string();
    let mut alice = tls_client(&addr, &pki.ca).unwrap();
    assert_type(&alice.sign_up("alice", "pw-alice").unwrap(), "RQ_TOKEN");
    let room = alice
        .request(json!({"type": "RQ_NEW_ROOM", "name": "mixed", "room_type": "DB_GLOBAL_CHAT"}))
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let mut bob = Client::connect(server.plain_addr.unwrap()).unwrap();
    assert_type(&bob.sign_up("bob", "pw-bob").unwrap(), "RQ_TOKEN");
    assert_type(
        &bob.request(json!({"type": "RQ_JOIN_ROOM", "room_id": room}))
            .unwrap(),
        "RQ_JOIN_ROOM",
    );

    let sent = alice
        .request(json!({"type": "RQ_MSG", "room_id": room, "message": "over TLS"}))
        .unwrap();
    assert_type(&sent, "RQ_MSG");
    assert_eq!(bob.recv_type("RQ_MSG").unwrap()["message"], "over TLS");
    bob.request(json!({"type": "RQ_MSG", "room_id": room, "message": "in plaintext"}))
        .unwrap();
    assert_eq!(alice.recv_type("RQ_MSG").unwrap()["message"], "in plaintext");

    // Many pushes at once pass TLS's own buffer (64 KiB) in order.
    for i in 0..300 {
        bob.send(
            &json!({"type": "RQ_MSG", "room_id": room, "message": format!("burst {i} {}", "x".repeat(400))}),
        )
        .unwrap();
    }
    for i in 0..300 {
        let m = alice.recv_type("RQ_MSG").unwrap();
        assert!(
            m["message"].as_str().unwrap().starts_with(&format!("burst {i} ")),
            "{m}"
        );
    }

    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let file_msg = alice.upload(room, "big.bin", &data, None).unwrap();
    assert_type(&file_msg, "RQ_MSG");
    let msg_id = file_msg["message_id"].as_i64().unwrap();
    let mut carol = tls_client(&addr, &pki.ca).unwrap();
    assert_type(&carol.sign_up("carol", "pw-carol").unwrap(), "RQ_TOKEN");
    assert_type(
        &carol
            .request(json!({"type": "RQ_JOIN_ROOM", "room_id": room}))
            .unwrap(),
        "RQ_JOIN_ROOM",
    );
    let (offer, got) = carol.download(room, msg_id, None).unwrap();
    assert_eq!(offer["size"], data.len());
    assert!(got == data, "the file changed on its way through TLS");
}

/// A client that speaks plaintext to the TLS port is closed at once and
/// cleanly (end of stream, no reset), the log says why once, and TLS
/// clients are served meanwhile. A client that does not trust the
/// certificate fails its handshake.
#[test]
fn plaintext_on_the_tls_port_is_closed_cleanly_and_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), "a");
    let toml = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        pki.cert.display().to_string(),
        pki.key.display().to_string()
    );
    let (child, addr, log) = spawn_parleyd_configured(dir.path(), &toml, None);
    let server = Stop(child);
    let mut bystander = tls_client(&addr, &pki.ca).unwrap();
    assert_type(&bystander.request(json!({"type": "RQ_PING"})).unwrap(), "RQ_PING");
    for _ in 0..5 {
        let mut plain = TcpStream::connect(&addr).unwrap();
        plain.write_all(b"{\"type\":\"RQ_PING\"}\n").unwrap();
        plain.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 64];
        let started = Instant::now();
        match plain.read(&mut buf) {
            Ok(0) => {}
            other => panic!("expected a clean close, got {other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_type(&bystander.request(json!({"type": "RQ_PING"})).unwrap(), "RQ_PING");
    }
    let stranger = make_pki(dir.path(), "other");
    assert!(
        tls_client(&addr, &stranger.ca)
            .and_then(|mut c| c.request(json!({"type": "RQ_PING"})))
            .is_err(),
        "a certificate from another CA was accepted"
    );
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("does not speak TLS").count(),
        1,
        "the cause is logged once:\n{text}"
    );
}

/// Handshakes that stall are cut as any connection that has not logged in
/// is: by the log-in timeout, and by the cap per address.
#[test]
fn a_stalled_handshake_is_cut_like_any_anonymous_connection() {
    let (server, pki, _certs) = tls_server(|c| {
        c.login_timeout_ms = 600;
        c.max_anonymous_per_addr = 4;
    });
    // The first bytes of a ClientHello, then nothing.
    let stall = || {
        let mut s = TcpStream::connect(server.addr).unwrap();
        s.write_all(&[0x16, 0x03, 0x01]).unwrap();
        s
    };
    let mut early: Vec<TcpStream> = (0..4).map(|_| stall()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let _late: Vec<TcpStream> = (0..4).map(|_| stall()).collect();
    for s in &mut early {
        assert!(
            closed_by_server(s, Duration::from_secs(3)),
            "the oldest stalled handshakes make room for new ones"
        );
    }
    let mut alone = stall();
    let started = Instant::now();
    assert!(closed_by_server(&mut alone, Duration::from_secs(5)));
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "closed before the timeout: {took:?}"
    );
    // A finished handshake without a log-in is timed out the same way.
    let mut idle = tls_client(&server.addr.to_string(), &pki.ca).unwrap();
    assert_type(&idle.request(json!({"type": "RQ_PING"})).unwrap(), "RQ_PING");
    wait_until(Duration::from_secs(5), || {
        idle.request(json!({"type": "RQ_PING"})).is_err()
    });
}

/// SIGHUP reads the certificate again: new connections get the new one,
/// the connection that was open goes on, and a broken file keeps the old.
#[test]
fn sighup_reloads_the_certificate_without_dropping_connections() {
    let dir = tempfile::tempdir().unwrap();
    let first = make_pki(dir.path(), "first");
    let second = make_pki(dir.path(), "second");
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::copy(&first.cert, &cert).unwrap();
    std::fs::copy(&first.key, &key).unwrap();
    let toml = format!(
        "tls_cert = {:?}\ntls_key = {:?}\n",
        cert.display().to_string(),
        key.display().to_string()
    );
    let (child, addr, log) = spawn_parleyd_configured(dir.path(), &toml, None);
    let server = Stop(child);
    let child = &server.0;
    let mut alice = tls_client(&addr, &first.ca).unwrap();
    assert_type(&alice.sign_up("alice", "pw-alice").unwrap(), "RQ_TOKEN");

    let hup = |child: &std::process::Child| {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    let reloads = |log: &Path| {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .matches("SIGHUP: TLS certificate")
            .count()
    };
    // A broken certificate file: the old one stays.
    std::fs::write(&cert, "not a certificate").unwrap();
    hup(child);
    wait_until(Duration::from_secs(5), || reloads(&log) == 1);
    assert!(std::fs::read_to_string(&log)
        .unwrap()
        .contains("old one stays in use"));
    assert_type(
        &tls_client(&addr, &first.ca)
            .unwrap()
            .request(json!({"type": "RQ_PING"}))
            .unwrap(),
        "RQ_PING",
    );
    // The renewed certificate: new connections get it.
    std::fs::copy(&second.cert, &cert).unwrap();
    std::fs::copy(&second.key, &key).unwrap();
    hup(child);
    wait_until(Duration::from_secs(5), || reloads(&log) == 2);
    let mut bob = tls_client(&addr, &second.ca).unwrap();
    assert_type(&bob.sign_up("bob", "pw-bob").unwrap(), "RQ_TOKEN");
    assert!(
        tls_client(&addr, &first.ca)
            .and_then(|mut c| c.request(json!({"type": "RQ_PING"})))
            .is_err(),
        "new connections still got the old certificate"
    );
    // The connection made before both reloads is still served.
    let room = alice
        .request(json!({"type": "RQ_NEW_ROOM", "name": "after reload", "room_type": "DB_GLOBAL_CHAT"}))
        .unwrap();
    assert_type(&room, "RQ_NEW_ROOM");
}

/// The terminal client over TLS: `--tls --ca` to chat, and the next start,
/// without the flags, connects with TLS again from the saved session.
#[test]
fn the_terminal_client_speaks_tls_and_remembers_it() {
    let (server, pki, _certs) = tls_server(|_| {});
    let addr = server.addr.to_string();
    let home = tempfile::tempdir().unwrap();
    let ca = pki.ca.to_string_lossy().into_owned();
    let mut cli = Cli::start_with(&addr, home.path(), "alice-secret", &["--tls", "--ca", &ca]);
    cli.expect("with TLS");
    cli.send("/signup alice");
    cli.send("/new lobby");
    cli.expect("#lobby");
    cli.send("hello over tls");
    cli.expect("hello over tls");
    cli.quit();
    let mut watcher = tls_client(&addr, &pki.ca).unwrap();
    assert_type(&watcher.log_in("alice", "alice-secret").unwrap(), "RQ_TOKEN");
    let rooms = watcher
        .request(json!({"type": "RQ_GET_ROOMS", "date": 0}))
        .unwrap();
    assert_eq!(rooms["rooms"][0]["name"], "lobby", "{rooms}");

    let mut again = Cli::start_with(&addr, home.path(), "not needed", &[]);
    again.expect("with TLS");
    again.expect("resumed the session of alice");
    again.quit();
}

/// Handshakes run on the reactor: a flood of them (finished ones, and
/// ClientHellos abandoned halfway) must not hold up a logged-in client.
#[test]
fn a_handshake_flood_does_not_hold_up_others() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    let (server, pki, _certs) = tls_server(|_| {});
    let addr = server.addr.to_string();
    let mut bystander = tls_client(&addr, &pki.ca).unwrap();
    assert_type(&bystander.sign_up("calm", "pw-calm").unwrap(), "RQ_TOKEN");
    let stop = Arc::new(AtomicBool::new(false));
    let handshakes = Arc::new(AtomicUsize::new(0));
    let attackers: Vec<_> = (0..4)
        .map(|k| {
            let (stop, handshakes, addr, ca) =
                (stop.clone(), handshakes.clone(), addr.clone(), pki.ca.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    if k % 2 == 0 {
                        if let Ok(mut c) = tls_client(&addr, &ca) {
                            if c.request(json!({"type": "RQ_PING"})).is_ok() {
                                handshakes.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    } else if let Ok(mut s) = TcpStream::connect(&addr) {
                        // A record header promising a ClientHello that never comes.
                        let _ =
                            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]);
                    }
                }
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let started = Instant::now();
        assert_type(&bystander.request(json!({"type": "RQ_PING"})).unwrap(), "RQ_PING");
        assert_type(
            &bystander.request(json!({"type": "RQ_GET_FRIENDS"})).unwrap(),
            "RQ_GET_FRIENDS",
        );
        latencies.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    latencies.sort();
    let worst = latencies[latencies.len() - 1];
    let p99 = latencies[(latencies.len() - 1) * 99 / 100];
    eprintln!(
        "handshake flood: {} full handshakes in 3 s; bystander p99 {p99:?}, worst {worst:?}",
        handshakes.load(Ordering::Relaxed)
    );
    assert!(handshakes.load(Ordering::Relaxed) > 100, "the flood did not run");
    assert!(worst < Duration::from_secs(1), "a bystander waited {worst:?}");
}

/// A self-signed certificate made the way `openssl req -x509` makes one
/// (its own CA, with the server's names) is trusted when given as `--ca`;
/// a client that trusts something else is told why when it connects.
#[test]
fn a_self_signed_certificate_given_as_ca_is_trusted() {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let server = start_with(|c| {
        c.tls_cert = Some(cert_path.clone());
        c.tls_key = Some(key_path.clone());
    });
    let addr = server.addr.to_string();
    let mut alice = tls_client(&addr, &cert_path).unwrap();
    assert_type(&alice.sign_up("alice", "pw-alice").unwrap(), "RQ_TOKEN");

    let other = make_pki(dir.path(), "other");
    let refused = tls_client(&addr, &other.ca)
        .err()
        .expect("an untrusted certificate was accepted");
    assert!(refused.to_string().contains("TLS handshake failed"), "{refused}");
}

/// With TLS the web listener serves HTTPS and WSS with the same certificate.
#[test]
fn the_web_listener_speaks_https_and_wss_with_the_same_certificate() {
    let (server, pki, _certs) = tls_server(|c| c.web = "127.0.0.1:0".into());
    let web = server.web_addr.expect("the web listener is on").to_string();
    let connector = Connector::tls(&web, &pki.ca).unwrap();

    let (mut reader, mut writer) = connector.connect(&web).unwrap();
    writer
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let mut page = Vec::new();
    let _ = reader.read_to_end(&mut page);
    let page = String::from_utf8_lossy(&page);
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(page.contains("<title>Parley</title>"));

    let (mut reader, mut writer) = connector.connect(&web).unwrap();
    let upgrade = format!(
        "GET /ws HTTP/1.1\r\nHost: {web}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: https://{web}\r\n\r\n"
    );
    writer.write_all(upgrade.as_bytes()).unwrap();
    // A masked text frame, as browsers send them.
    let payload = br#"{"type":"RQ_PING","req_id":"wss"}"#;
    let mask = [7u8, 1, 2, 9];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    writer.write_all(&frame).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    wait_until(Duration::from_secs(10), || {
        if let Ok(n) = reader.read(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).contains(r#""req_id":"wss""#)
    });
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 101"), "{got}");
    assert!(got.contains(r#"{"type":"RQ_PING","req_id":"wss"}"#), "{got}");
}
