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

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// A file of `web/`, served at `path`.
macro_rules! asset {
    ($path:literal, $file:literal, $content_type:expr) => {
        (
            $path,
            Asset {
                body: include_bytes!(concat!("../../web/", $file)),
                content_type: $content_type,
            },
        )
    };
}

const FILES: &[(&str, Asset)] = &[
    asset!("/", "index.html", HTML),
    asset!("/app.js", "app.js", JS),
    asset!("/state.js", "state.js", JS),
    asset!("/net.js", "net.js", JS),
    asset!("/messages.js", "messages.js", JS),
    asset!("/sha256.js", "sha256.js", JS),
    asset!("/style.css", "style.css", CSS),
    asset!("/favicon.svg", "favicon.svg", SVG),
];

/// The file served at `path` (`/index.html` is `/`).
pub fn find(path: &str) -> Option<&'static Asset> {
    let path = if path == "/index.html" { "/" } else { path };
    FILES.iter().find(|(p, _)| *p == path).map(|(_, a)| a)
}
