//! parleyd's log: standard error, or a file that SIGHUP reopens (so that
//! logrotate can move it away), at a level SIGHUP can change.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use parking_lot::Mutex;

/// The log file, shared by the logger and whoever reopens it.
#[derive(Clone)]
pub struct LogFile {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

fn open(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl LogFile {
    pub fn open(path: &Path) -> anyhow::Result<LogFile> {
        let file = open(path).with_context(|| format!("opening the log file {}", path.display()))?;
        Ok(LogFile {
            path: path.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
        })
    }

    /// Opens the file at the path again (it may have been moved away).
    pub fn reopen(&self) -> io::Result<()> {
        let file = open(&self.path)?;
        *self.file.lock() = file;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Write for LogFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.lock().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.lock().flush()
    }
}

/// Parses a log level setting.
pub fn level(text: &str) -> anyhow::Result<log::LevelFilter> {
    text.parse()
        .with_context(|| format!("log level {text:?} is not one of error, warn, info, debug, trace"))
}

/// Starts logging at `level`, to `file` if given (else standard error).
/// The logger itself takes everything; the level is `log`'s maximum, so
/// [`set_level`] can raise it later as well as lower it.
pub fn init(level_text: &str, file: Option<&Path>) -> anyhow::Result<Option<LogFile>> {
    let filter = level(level_text)?;
    let config = simplelog::ConfigBuilder::new()
        .set_thread_level(log::LevelFilter::Off)
        .set_target_level(log::LevelFilter::Off)
        .build();
    let log_file = match file {
        Some(path) => {
            let log_file = LogFile::open(path)?;
            simplelog::WriteLogger::init(log::LevelFilter::Trace, config, log_file.clone())
                .context("setting up logging")?;
            Some(log_file)
        }
        None => {
            // Colours only on a terminal, so log files and pipes stay plain text.
            let color = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                simplelog::ColorChoice::Auto
            } else {
                simplelog::ColorChoice::Never
            };
            simplelog::TermLogger::init(
                log::LevelFilter::Trace,
                config,
                simplelog::TerminalMode::Stderr,
                color,
            )
            .context("setting up logging")?;
            None
        }
    };
    log::set_max_level(filter);
    Ok(log_file)
}

/// Changes the level while running.
pub fn set_level(filter: log::LevelFilter) {
    log::set_max_level(filter);
}

/// A protocol line for the log, with secrets (`pass`, `token`) masked and
/// anything that is not JSON shown by its length only.
pub fn masked_line(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let text = text.trim_end();
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(mut map)) => {
            for key in ["pass", "token"] {
                if let Some(v) = map.get_mut(key) {
                    *v = serde_json::Value::from("***");
                }
            }
            serde_json::Value::Object(map).to_string()
        }
        _ => format!("({} bytes, not a JSON object)", line.len()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_are_masked() {
        let line = br#"{"type":"RQ_LOG_IN","login":"alice","pass":"5e884898da28"}"#;
        let shown = super::masked_line(line);
        assert!(
            shown.contains("alice") && shown.contains("***") && !shown.contains("5e88"),
            "{shown}"
        );
        let shown = super::masked_line(br#"{"type":"RQ_TOKEN","token":"abcdef"}"#);
        assert!(!shown.contains("abcdef"), "{shown}");
        assert!(super::masked_line(b"\xff\x00").contains("not a JSON object"));
    }
}
