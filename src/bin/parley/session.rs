//! The saved session: the token of the last log-in, per server, readable
//! only by its owner (mode 0600), resumed on the next start.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use serde_json::{json, Value};

/// Where sessions are kept: `$XDG_CONFIG_HOME/parley`, else `~/.config/parley`.
fn dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("parley"));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config").join("parley"))
}

fn path(server: &str) -> Option<PathBuf> {
    let safe: String = server
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    dir().map(|d| d.join(format!("session-{safe}.json")))
}

/// A saved session: who, and how the server was reached.
pub struct Saved {
    pub login: String,
    pub token: String,
    /// TLS was used, trusting this CA file.
    pub tls_ca: Option<PathBuf>,
}

/// The saved session for `server`.
pub fn load(server: &str) -> Option<Saved> {
    let text = fs::read_to_string(path(server)?).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(Saved {
        login: v["login"].as_str()?.to_owned(),
        token: v["token"].as_str()?.to_owned(),
        tls_ca: v["tls_ca"].as_str().map(PathBuf::from),
    })
}

/// Saves the session, readable by its owner only, with the TLS choice.
pub fn save(server: &str, login: &str, token: &str, tls_ca: Option<&std::path::Path>) -> std::io::Result<()> {
    let path =
        path(server).ok_or_else(|| std::io::Error::other("no home directory to save the session in"))?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // An older file may have been created with laxer permissions.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
    }
    let mut saved = json!({"login": login, "token": token});
    if let Some(ca) = tls_ca {
        saved["tls_ca"] = json!(ca.to_string_lossy());
    }
    file.write_all(saved.to_string().as_bytes())
}

pub fn remove(server: &str) {
    if let Some(path) = path(server) {
        let _ = fs::remove_file(path);
    }
}
