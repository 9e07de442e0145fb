//! The web listener without a browser: the page's headers, WebSocket chat
//! beside TCP, origins, bad and oversized frames, the anonymous cap, and
//! files over HTTP, byte-identical with TCP transfers.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use parley::client::password_digest;
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

use crate::util::{start_with, TestServer};

fn web_server(adjust: impl FnOnce(&mut parley::Config)) -> (TestServer, SocketAddr) {
    let server = start_with(|c| {
        c.web = "127.0.0.1:0".into();
        adjust(c);
    });
    let web = server.web_addr.expect("the web listener is on");
    (server, web)
}

/// One HTTP request; the whole answer (the server closes after it).
fn http(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).unwrap();
    answer
}

fn split(answer: &[u8]) -> (String, Vec<u8>) {
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").expect("a head") + 4;
    (
        String::from_utf8_lossy(&answer[..end]).into_owned(),
        answer[end..].to_vec(),
    )
}

type Ws = WebSocket<TcpStream>;

fn ws_connect(addr: SocketAddr, origin: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(format!("ws://{addr}/ws")).unwrap();
    if let Some(origin) = origin {
        request.headers_mut().insert("Origin", origin.parse().unwrap());
    }
    tungstenite::client::client(request, stream)
        .map(|(ws, _)| ws)
        .map_err(|e| match e {
            tungstenite::HandshakeError::Failure(e) => e,
            tungstenite::HandshakeError::Interrupted(_) => tungstenite::Error::ConnectionClosed,
        })
}

fn ws_send(ws: &mut Ws, msg: Value) {
    ws.send(Message::text(msg.to_string())).unwrap();
}

/// The next object, skipping pings.
fn ws_recv(ws: &mut Ws) -> Value {
    loop {
        match ws.read().unwrap() {
            Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            Message::Close(frame) => panic!("closed: {frame:?}"),
            _ => {}
        }
    }
}

/// The answer to the request with this req_id.
fn ws_request(ws: &mut Ws, mut msg: Value, req_id: i64) -> Value {
    msg["req_id"] = json!(req_id);
    ws_send(ws, msg);
    loop {
        let got = ws_recv(ws);
        if got["req_id"] == req_id {
            return got;
        }
    }
}

fn ws_user(web: SocketAddr, login: &str) -> (Ws, String) {
    let mut ws = ws_connect(web, Some(&format!("http://{web}"))).unwrap();
    let reply = ws_request(
        &mut ws,
        json!({"type": "RQ_SIGN_UP", "login": login, "pass": password_digest(&format!("pw-{login}"))}),
        1,
    );
    assert_eq!(reply["type"], "RQ_TOKEN", "{reply}");
    let token = reply["token"].as_str().unwrap().to_owned();
    (ws, token)
}

#[test]
fn the_page_is_served_with_strict_headers() {
    let (_server, web) = web_server(|_| {});
    let (head, body) = split(&http(web, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Security-Policy: default-src 'none'; script-src 'self'"),
        "{head}"
    );
    assert!(head.contains("X-Content-Type-Options: nosniff"));
    assert!(head.contains("Cache-Control: no-cache"));
    assert!(String::from_utf8_lossy(&body).contains("<title>Parley</title>"));
    let etag = head
        .lines()
        .find_map(|l| l.strip_prefix("ETag: "))
        .expect("an ETag")
        .to_owned();
    let (again, body) = split(&http(
        web,
        format!("GET / HTTP/1.1\r\nIf-None-Match: {etag}\r\n\r\n").as_bytes(),
    ));
    assert!(again.starts_with("HTTP/1.1 304"), "{again}");
    assert!(body.is_empty());
    let (js, _) = split(&http(web, b"GET /app.js HTTP/1.1\r\n\r\n"));
    assert!(js.contains("Content-Type: text/javascript"), "{js}");
    assert!(split(&http(web, b"GET /secret HTTP/1.1\r\n\r\n"))
        .0
        .starts_with("HTTP/1.1 404"));
    assert!(split(&http(web, b"DELETE / HTTP/1.1\r\n\r\n"))
        .0
        .starts_with("HTTP/1.1 405"));
    assert!(split(&http(web, b"\x16\x03\x01 not http\r\n\r\n"))
        .0
        .starts_with("HTTP/1.1 400"));
}

#[test]
fn a_websocket_user_chats_with_a_tcp_user() {
    let (server, web) = web_server(|_| {});
    let (mut ws, _) = ws_user(web, "webby");
    let room = ws_request(
        &mut ws,
        json!({"type": "RQ_NEW_ROOM", "name": "bridge", "room_type": "DB_GLOBAL_CHAT"}),
        2,
    );
    let room_id = room["id"].as_i64().unwrap();
    let mut tcp = server.user("tcpy");
    tcp.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room_id}));
    let joined = ws_recv(&mut ws);
    assert_eq!(joined["type"], "RQ_NEW_MEMBER", "{joined}");
    let sent = ws_request(
        &mut ws,
        json!({"type": "RQ_MSG", "room_id": room_id, "message": "from the page"}),
        3,
    );
    assert_eq!(sent["type"], "RQ_MSG");
    let got = tcp.expect("RQ_MSG");
    assert_eq!(
        (got["login"].as_str(), got["message"].as_str()),
        (Some("webby"), Some("from the page"))
    );
    tcp.req(json!({"type": "RQ_MSG", "room_id": room_id, "message": "from the terminal"}));
    let got = ws_recv(&mut ws);
    assert_eq!(
        (got["login"].as_str(), got["message"].as_str()),
        (Some("tcpy"), Some("from the terminal"))
    );
    // A binary frame carries an object too; a pretty-printed one is one object.
    ws.send(Message::binary(br#"{"type":"RQ_PING","req_id":10}"#.to_vec()))
        .unwrap();
    assert_eq!(ws_recv(&mut ws)["req_id"], 10);
    ws.send(Message::text("{\n  \"type\": \"RQ_PING\",\n  \"req_id\": 11\n}"))
        .unwrap();
    assert_eq!(ws_recv(&mut ws)["req_id"], 11);
}

#[test]
fn other_origins_are_refused_unless_listed() {
    let (_server, web) = web_server(|c| c.web_origins = vec!["https://chat.example.org".into()]);
    match ws_connect(web, Some("http://evil.example")) {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("expected 403, got {other:?}"),
    }
    assert!(ws_connect(web, Some("https://chat.example.org")).is_ok());
    assert!(ws_connect(web, Some(&format!("http://{web}"))).is_ok());
}

#[test]
fn bad_and_oversized_frames_are_answered_and_the_worst_closed() {
    let (_server, web) = web_server(|c| c.max_line_bytes = 4096);
    let mut ws = ws_connect(web, None).unwrap();
    ws.send(Message::text("{not json")).unwrap();
    let reply = ws_recv(&mut ws);
    assert_eq!(reply["error_code"], "ER_BAD_REQUEST", "{reply}");
    ws.send(Message::text(format!(
        r#"{{"type":"RQ_PING","pad":"{}"}}"#,
        "x".repeat(6000)
    )))
    .unwrap();
    let reply = ws_recv(&mut ws);
    assert_eq!(reply["error_code"], "ER_TOO_LARGE", "{reply}");
    assert_eq!(
        ws_request(&mut ws, json!({"type": "RQ_PING"}), 5)["type"],
        "RQ_PING",
        "still open"
    );
    ws.send(Message::text("y".repeat(4 * 4096 + 100))).unwrap();
    let closed = loop {
        match ws.read() {
            Ok(Message::Close(frame)) => break frame,
            Ok(_) => continue,
            Err(e) => panic!("expected a close frame, got {e}"),
        }
    };
    assert_eq!(closed.map(|f| u16::from(f.code)), Some(1009));
}

#[test]
fn web_sockets_that_never_log_in_count_against_the_per_address_cap() {
    let (_server, web) = web_server(|c| c.max_anonymous_per_addr = 2);
    let mut first = ws_connect(web, None).unwrap();
    let _second = ws_connect(web, None).unwrap();
    let mut third = ws_connect(web, None).unwrap();
    // The oldest idle one made room.
    let ended = loop {
        match first.read() {
            Ok(Message::Close(_)) | Err(_) => break true,
            Ok(_) => continue,
        }
    };
    assert!(ended);
    assert_eq!(
        ws_request(&mut third, json!({"type": "RQ_PING"}), 1)["type"],
        "RQ_PING"
    );
}

#[test]
fn files_go_up_and_down_over_http_as_over_tcp() {
    let (server, web) = web_server(|_| {});
    let (mut ws, token) = ws_user(web, "filer");
    let room = ws_request(
        &mut ws,
        json!({"type": "RQ_NEW_ROOM", "name": "files", "room_type": "DB_GLOBAL_CHAT"}),
        2,
    );
    let room_id = room["id"].as_i64().unwrap();
    let mut tcp = server.user("reader");
    tcp.req(json!({"type": "RQ_JOIN_ROOM", "room_id": room_id}));

    let data: Vec<u8> = (0..400_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let mut request = format!(
        "POST /files?room_id={room_id}&name=holiday%20photo.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
        data.len()
    )
    .into_bytes();
    request.extend_from_slice(&data);
    let (head, body) = split(&http(web, &request));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let stored: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(stored["file_name"], "holiday photo.bin");
    let msg_id = stored["message_id"].as_i64().unwrap();
    let pushed = tcp.expect("RQ_MSG");
    assert_eq!(pushed["message_id"], msg_id);

    let (_, over_tcp) = tcp.client.download(room_id, msg_id, None).unwrap();
    assert_eq!(over_tcp, data, "byte-identical through TCP");
    let get =
        format!("GET /files/{msg_id}?room_id={room_id} HTTP/1.1\r\nAuthorization: Bearer {token}\r\n\r\n");
    let (head, body) = split(&http(web, get.as_bytes()));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("filename*=UTF-8''holiday%20photo.bin"), "{head}");
    assert_eq!(body, data, "byte-identical through HTTP");

    // No token, a stranger's token, a room one is not in.
    let (head, _) = split(&http(
        web,
        format!("GET /files/{msg_id}?room_id={room_id} HTTP/1.1\r\n\r\n").as_bytes(),
    ));
    assert!(head.starts_with("HTTP/1.1 401"), "{head}");
    let (mut _other, stranger) = ws_user(web, "stranger");
    let get =
        format!("GET /files/{msg_id}?room_id={room_id} HTTP/1.1\r\nAuthorization: Bearer {stranger}\r\n\r\n");
    let (head, body) = split(&http(web, get.as_bytes()));
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
    let refusal: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(refusal["error_code"], "ER_FORBIDDEN");
    let too_big = format!(
        "POST /files?room_id={room_id}&name=huge HTTP/1.1\r\nAuthorization: Bearer {token}\r\nContent-Length: 999999999999\r\n\r\n"
    );
    let (head, _) = split(&http(web, too_big.as_bytes()));
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
}
