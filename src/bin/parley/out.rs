//! Where the client's lines go: above the prompt on a terminal (line mode
//! with readline), plain stdout when scripted, or the full-screen view.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use rustyline::ExternalPrinter;

/// What the full-screen view is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScreenEvent {
    /// A line for whichever room is shown.
    Notice(String),
    /// A message line of a room (`id` its message id).
    Message { room: i64, id: i64, text: String },
    /// The user entered this room (0: none); its history follows, and
    /// `first_new` is the first message they had not read.
    Entered { room: i64, first_new: Option<i64> },
    /// The connection: `None` connected, else what to show.
    Link(Option<String>),
    /// Someone is typing, or the directory changed: draw again.
    Redraw,
}

#[derive(Clone)]
enum Sink {
    Printer(Arc<Mutex<Box<dyn ExternalPrinter + Send>>>),
    Stdout,
    Screen(Sender<ScreenEvent>),
}

/// Where lines go; cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Out {
    sink: Sink,
    /// Commands that failed (transfers finish later, on their own threads).
    failures: Arc<AtomicUsize>,
}

impl Out {
    pub fn printer(printer: Box<dyn ExternalPrinter + Send>) -> Out {
        Out::with(Sink::Printer(Arc::new(Mutex::new(printer))))
    }

    pub fn stdout() -> Out {
        Out::with(Sink::Stdout)
    }

    pub fn screen(events: Sender<ScreenEvent>) -> Out {
        Out::with(Sink::Screen(events))
    }

    fn with(sink: Sink) -> Out {
        Out {
            sink,
            failures: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A notice, a command's answer, a push.
    pub fn line(&self, text: impl AsRef<str>) {
        let text = text.as_ref();
        match &self.sink {
            Sink::Printer(printer) => {
                let _ = printer.lock().print(format!("{text}\n"));
            }
            Sink::Stdout => {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{text}");
                let _ = stdout.flush();
            }
            Sink::Screen(events) => {
                for line in text.lines() {
                    let _ = events.send(ScreenEvent::Notice(line.to_owned()));
                }
            }
        }
    }

    /// A message of a room.
    pub fn message(&self, room: i64, id: i64, text: String) {
        match &self.sink {
            Sink::Screen(events) => {
                let _ = events.send(ScreenEvent::Message { room, id, text });
            }
            _ => self.line(text),
        }
    }

    /// The user entered a room (0: left it and is in none).
    pub fn entered(&self, room: i64, first_new: Option<i64>) {
        if let Sink::Screen(events) = &self.sink {
            let _ = events.send(ScreenEvent::Entered { room, first_new });
        }
    }

    /// The connection's state changed.
    pub fn link(&self, state: Option<String>) {
        match &self.sink {
            Sink::Screen(events) => {
                let _ = events.send(ScreenEvent::Link(state));
            }
            _ => self.line(state.unwrap_or_else(|| "reconnected".into())),
        }
    }

    /// Asks the view to draw again.
    pub fn redraw(&self) {
        if let Sink::Screen(events) = &self.sink {
            let _ = events.send(ScreenEvent::Redraw);
        }
    }

    /// A failure that happened away from the command that started it.
    pub fn failed(&self, text: impl AsRef<str>) {
        self.failures.fetch_add(1, Ordering::SeqCst);
        self.line(format!("error: {}", text.as_ref()));
    }

    /// A command failed.
    pub fn count_failure(&self) {
        self.failures.fetch_add(1, Ordering::SeqCst);
    }

    pub fn failures(&self) -> usize {
        self.failures.load(Ordering::SeqCst)
    }

    /// Reads a secret from the terminal without echo (line mode only).
    pub fn ask_secret(&self, prompt: &str) -> Result<String, String> {
        match &self.sink {
            Sink::Screen(_) => Err("type the password when asked, or set PARLEY_PASSWORD".into()),
            _ => rpassword::prompt_password(prompt).map_err(|e| e.to_string()),
        }
    }
}
