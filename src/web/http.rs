//! The HTTP side of the web listener: one request read with httparse, and
//! the responses (the bundled client's files, the WebSocket upgrade, and
//! refusals), with the headers a page served to browsers needs.

use std::fmt::Write as _;

/// Largest request head accepted (the page's requests are small).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;

/// What a request asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// A file of the client, by path.
    Asset { path: String, etag: Option<String> },
    /// The WebSocket upgrade, with its key.
    Upgrade { key: String },
    /// `POST /files?room_id=&name=`: a file of `size` bytes follows.
    Upload {
        room_id: i64,
        name: String,
        size: u64,
        token: String,
    },
    /// `GET /files/<message id>?room_id=`.
    Download {
        room_id: i64,
        msg_id: i64,
        token: String,
    },
    /// Refused: the status and why.
    Refused { status: u16, why: &'static str },
}

/// Reads a request head; `Ok(None)` until it is complete. The returned
/// length is the head's, so bytes after it belong to what follows.
pub fn parse(
    buf: &[u8],
    own_origins: &dyn Fn(&str, Option<&str>) -> bool,
) -> Result<Option<(Request, usize)>, Request> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(Request::Refused {
                status: 431,
                why: "request head too large",
            })
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => {
            return Err(Request::Refused {
                status: 400,
                why: "not an HTTP request",
            })
        }
    };
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .and_then(|h| std::str::from_utf8(h.value).ok())
            .map(str::trim)
    };
    let method = req.method.unwrap_or("");
    let target = req.path.unwrap_or("/");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if path == "/files" || path.starts_with("/files/") {
        let files = files_request(method, path, query, &header);
        return Ok(Some((
            files.unwrap_or_else(|(status, why)| Request::Refused { status, why }),
            len,
        )));
    }
    if method != "GET" && method != "HEAD" {
        return Ok(Some((
            Request::Refused {
                status: 405,
                why: "only GET is served here",
            },
            len,
        )));
    }
    if path == "/ws" {
        let upgrade = header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        let Some(key) = header("sec-websocket-key").filter(|_| upgrade) else {
            return Ok(Some((
                Request::Refused {
                    status: 400,
                    why: "a WebSocket upgrade is expected here",
                },
                len,
            )));
        };
        if header("sec-websocket-version") != Some("13") {
            return Ok(Some((
                Request::Refused {
                    status: 426,
                    why: "WebSocket version 13 is expected",
                },
                len,
            )));
        }
        // Browsers send Origin; a page from elsewhere must not speak for its visitor.
        if !own_origins(header("origin").unwrap_or(""), header("host")) {
            return Ok(Some((
                Request::Refused {
                    status: 403,
                    why: "this origin may not connect",
                },
                len,
            )));
        }
        return Ok(Some((Request::Upgrade { key: key.to_owned() }, len)));
    }
    let asset = Request::Asset {
        path: path.to_owned(),
        etag: header("if-none-match").map(str::to_owned),
    };
    Ok(Some((asset, len)))
}

/// A file request: the token from `Authorization: Bearer`, the rest from
/// the path and the query.
fn files_request<'h>(
    method: &str,
    path: &str,
    query: &str,
    header: &dyn Fn(&str) -> Option<&'h str>,
) -> Result<Request, (u16, &'static str)> {
    let token = header("authorization")
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or((401, "send the session's token as Authorization: Bearer TOKEN"))?
        .to_owned();
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| percent_decode(v))
    };
    let room_id = param("room_id")
        .and_then(|v| v.parse().ok())
        .ok_or((400, "room_id is missing"))?;
    match (method, path) {
        ("POST", "/files") => {
            if header("transfer-encoding").is_some() {
                return Err((411, "send the file with a Content-Length"));
            }
            let size = header("content-length")
                .and_then(|v| v.parse().ok())
                .ok_or((411, "send the file with a Content-Length"))?;
            let name = param("name")
                .filter(|n| !n.is_empty())
                .ok_or((400, "name is missing"))?;
            Ok(Request::Upload {
                room_id,
                name,
                size,
                token,
            })
        }
        ("GET", _) => {
            let msg_id = path["/files/".len()..]
                .parse()
                .map_err(|_| (404, "no such file"))?;
            Ok(Request::Download {
                room_id,
                msg_id,
                token,
            })
        }
        _ => Err((
            405,
            "files are sent with POST /files and fetched with GET /files/ID",
        )),
    }
}

/// Decodes `%XX` escapes and `+` of a query value; `None` if an escape is
/// broken or the result is not UTF-8.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// The answer to a file request that was refused by the server: the
/// protocol's error as a status and a JSON body `{"error_code","msg"}`.
pub fn file_refusal(error_code: &str, msg: &str) -> Vec<u8> {
    let status = match error_code {
        "ER_AUTH_DATA" | "ER_UNAUTHORIZED" => 401,
        "ER_FORBIDDEN" | "ER_BANNED" => 403,
        "ER_NOT_FOUND" => 404,
        "ER_TOO_LARGE" => 413,
        "ER_RATE_LIMITED" | "ER_BUSY" => 429,
        "ER_INTERNAL" => 500,
        _ => 400,
    };
    json_response(
        status,
        &serde_json::json!({"error_code": error_code, "msg": msg}).to_string(),
    )
}

/// A JSON answer.
pub fn json_response(status: u16, body: &str) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    common_headers(&mut out);
    let _ = write!(
        out,
        "Content-Type: application/json\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    out.into_bytes()
}

/// The head of a file's download; its bytes follow.
pub fn download_head(name: &str, size: u64) -> Vec<u8> {
    // RFC 5987: any name, safely (a browser never reads it as a path).
    let encoded: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let mut out = String::from("HTTP/1.1 200 OK\r\n");
    common_headers(&mut out);
    let _ = write!(
        out,
        "Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\
         Content-Disposition: attachment; filename*=UTF-8''{encoded}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"
    );
    out.into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        _ => "Error",
    }
}

/// The Content-Security-Policy of every response: only the server's own
/// scripts, styles and connections; no inline code, no frames.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
img-src 'self' data: blob:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn common_headers(out: &mut String) {
    let _ = write!(
        out,
        "Content-Security-Policy: {CSP}\r\nX-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         X-Frame-Options: DENY\r\n"
    );
}

/// A file of the client; a matching `If-None-Match` gets 304.
pub fn asset(
    body: &[u8],
    content_type: &str,
    etag: &str,
    if_none_match: Option<&str>,
    head_only: bool,
) -> Vec<u8> {
    let mut out = String::new();
    if if_none_match == Some(etag) {
        out.push_str("HTTP/1.1 304 Not Modified\r\n");
        common_headers(&mut out);
        let _ = write!(
            out,
            "ETag: {etag}\r\nCache-Control: no-cache\r\nConnection: close\r\n\r\n"
        );
        return out.into_bytes();
    }
    out.push_str("HTTP/1.1 200 OK\r\n");
    common_headers(&mut out);
    let _ = write!(
        out,
        "Content-Type: {content_type}\r\nContent-Length: {}\r\nETag: {etag}\r\nCache-Control: no-cache\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// A refusal with a one-line text body.
pub fn refusal(status: u16, why: &str) -> Vec<u8> {
    let reason = reason(status);
    let body = format!("{why}\n");
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    common_headers(&mut out);
    let _ = write!(
        out,
        "Content-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    out.into_bytes()
}

/// The 101 answer to a WebSocket upgrade.
pub fn upgraded(key: &str) -> Vec<u8> {
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(_: &str, _: Option<&str>) -> bool {
        true
    }

    #[test]
    fn reads_requests_and_waits_for_the_whole_head() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\nHost: x\r\n", &any), Ok(None));
        let (req, len) = parse(b"GET /app.js HTTP/1.1\r\nHost: x\r\n\r\nrest", &any)
            .unwrap()
            .unwrap();
        assert_eq!(
            req,
            Request::Asset {
                path: "/app.js".into(),
                etag: None
            }
        );
        assert_eq!(len, 33, "the head ends at the blank line");
        let upgrade = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://x\r\n\r\n";
        let (req, _) = parse(upgrade, &any).unwrap().unwrap();
        assert_eq!(
            req,
            Request::Upgrade {
                key: "dGhlIHNhbXBsZSBub25jZQ==".into()
            }
        );
        let refuse = |_: &str, _: Option<&str>| false;
        let (req, _) = parse(upgrade, &refuse).unwrap().unwrap();
        assert!(matches!(req, Request::Refused { status: 403, .. }));
        assert!(matches!(
            parse(b"\x16\x03\x01garbage\r\n\r\n", &any),
            Err(Request::Refused { status: 400, .. })
        ));
    }

    #[test]
    fn file_requests_need_a_token_and_a_length() {
        let up = b"POST /files?room_id=3&name=my%20notes+v2.txt HTTP/1.1\r\nAuthorization: Bearer abc\r\nContent-Length: 10\r\n\r\n";
        let (req, _) = parse(up, &any).unwrap().unwrap();
        assert_eq!(
            req,
            Request::Upload {
                room_id: 3,
                name: "my notes v2.txt".into(),
                size: 10,
                token: "abc".into()
            }
        );
        let (req, _) = parse(
            b"GET /files/7?room_id=3 HTTP/1.1\r\nAuthorization: Bearer abc\r\n\r\n",
            &any,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            req,
            Request::Download {
                room_id: 3,
                msg_id: 7,
                token: "abc".into()
            }
        );
        let (req, _) = parse(b"GET /files/7?room_id=3 HTTP/1.1\r\n\r\n", &any)
            .unwrap()
            .unwrap();
        assert!(matches!(req, Request::Refused { status: 401, .. }));
        let chunked = b"POST /files?room_id=3&name=x HTTP/1.1\r\nAuthorization: Bearer a\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(matches!(
            parse(chunked, &any).unwrap().unwrap().0,
            Request::Refused { status: 411, .. }
        ));
        assert_eq!(percent_decode("%E2%9C%93%2"), None);
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("café"));
    }

    #[test]
    fn the_accept_key_is_the_rfc_example() {
        let answer = String::from_utf8(upgraded("dGhlIHNhbXBsZSBub25jZQ==")).unwrap();
        assert!(answer.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
    }
}
