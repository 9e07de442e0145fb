//! The web client's files, built into the binary (no CDN: it works on a
//! machine without internet).

/// One file of the client.
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
}

impl Asset {
    /// A validator that changes with the content (the binary's files change
    /// only with the binary).
    pub fn etag(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.body);
        format!("\"{}\"", hex::encode(&digest[..12]))
    }
}

const FILES: &[(&str, Asset)] = &[
    (
        "/",
        Asset {
            body: include_bytes!("../../web/index.html"),
            content_type: "text/html; charset=utf-8",
        },
    ),
    (
        "/app.js",
        Asset {
            body: include_bytes!("../../web/app.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "/state.js",
        Asset {
            body: include_bytes!("../../web/state.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "/net.js",
        Asset {
            body: include_bytes!("../../web/net.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "/messages.js",
        Asset {
            body: include_bytes!("../../web/messages.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "/sha256.js",
        Asset {
            body: include_bytes!("../../web/sha256.js"),
            content_type: "text/javascript; charset=utf-8",
        },
    ),
    (
        "/style.css",
        Asset {
            body: include_bytes!("../../web/style.css"),
            content_type: "text/css; charset=utf-8",
        },
    ),
    (
        "/favicon.svg",
        Asset {
            body: include_bytes!("../../web/favicon.svg"),
            content_type: "image/svg+xml",
        },
    ),
];

/// The file served at `path` (`/index.html` is `/`).
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    FILES.iter().find(|(p, _)| *p == path).map(|(_, a)| a)
}
