//! Stored files: names, paths, the start-up sweep, and the file-I/O thread.
//!
//! File bytes never touch the disk from the reactor thread: the reactor hands
//! [`FileTask`]s to one file thread and gets [`FileEvent`]s back (with a
//! wake). Uploads go to a temporary file, are synced, and renamed under a
//! random server-chosen name; only then is the message stored.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use mio::Waker;

/// Prefix of temporary upload files (swept at start-up).
const TEMP_PREFIX: &str = ".upload-";
/// Longest display name kept, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// A path beside `path`, its name with `suffix` appended (`parley.db-wal`).
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The directory holding stored files.
pub fn files_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("files")
}

/// A display name made safe: the part after any path separator, without
/// control characters, trimmed, at most 255 bytes. `None` if nothing is left.
pub fn sanitize_name(name: &str) -> Option<String> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = base.chars().filter(|c| !c.is_control()).collect();
    let mut cleaned = cleaned.trim().to_owned();
    if cleaned.len() > MAX_NAME_BYTES {
        let mut end = MAX_NAME_BYTES;
        while !cleaned.is_char_boundary(end) {
            end -= 1;
        }
        cleaned.truncate(end);
    }
    match cleaned.as_str() {
        "" | "." | ".." => None,
        _ => Some(cleaned),
    }
}

/// A fresh random name for a stored file (32 hex characters).
pub fn new_stored_name() -> io::Result<String> {
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|e| io::Error::other(e.to_string()))?;
    Ok(hex::encode(random))
}

/// Whether a stored name has the form the server gives (so it can never
/// point outside the files directory).
pub fn is_stored_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Removes a stored file; a missing file is not an error.
pub fn remove_stored(dir: &Path, stored_name: &str) {
    if !is_stored_name(stored_name) {
        return;
    }
    match fs::remove_file(dir.join(stored_name)) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => log::error!("removing stored file {stored_name}: {e}"),
    }
}

/// Deletes everything in the files directory that no message refers to:
/// leftovers of a crash mid-upload or between a rename and its message.
///
/// With `older_than`, only files last written longer ago than that go: the
/// nodes of a cluster share the directory, and another node's upload under
/// way is referenced by no message yet.
pub fn sweep(
    dir: &Path,
    referenced: &HashSet<String>,
    older_than: Option<std::time::Duration>,
) -> io::Result<usize> {
    fs::create_dir_all(dir)?;
    let mut removed = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let old_enough = match older_than {
            None => true,
            Some(age) => entry
                .metadata()?
                .modified()?
                .elapsed()
                .is_ok_and(|elapsed| elapsed > age),
        };
        if !referenced.contains(&name) && old_enough && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Work for the file thread. `id` names a transfer.
#[derive(Debug)]
pub enum FileTask {
    /// Start an upload into a new temporary file.
    Create { id: u64, dir: PathBuf },
    /// Append bytes to an upload.
    Write { id: u64, data: Vec<u8> },
    /// Sync the upload, rename it to `stored_name`, sync the directory.
    Finish { id: u64, stored_name: String },
    /// Forget an upload and delete its temporary file.
    Abort { id: u64 },
    /// Open a stored file for a download.
    OpenRead { id: u64, path: PathBuf },
    /// Read the next chunk of a download.
    Read { id: u64, len: usize },
    /// A download ended.
    Close { id: u64 },
    /// Remove a stored file whose message could not be stored.
    Delete { dir: PathBuf, stored_name: String },
}

/// What the file thread reports back.
#[derive(Debug)]
pub enum FileEvent {
    Written { id: u64, n: usize },
    Stored { id: u64 },
    Chunk { id: u64, data: Vec<u8> },
    Failed { id: u64, error: String },
}

enum Open {
    Upload { file: File, temp: PathBuf, dir: PathBuf },
    Download { file: File },
}

/// Runs the file thread until the task channel closes. A panic while doing
/// one task fails that transfer only; the thread goes on with the next.
pub fn run_file_thread(tasks: Receiver<FileTask>, events: Sender<FileEvent>, waker: Arc<Waker>) {
    let mut open: HashMap<u64, Open> = HashMap::new();
    for task in tasks.iter() {
        let id = task.transfer_id();
        let event = catch_unwind(AssertUnwindSafe(|| do_task(task, &mut open))).unwrap_or_else(|_| {
            log::error!("the file thread panicked on transfer {id:?}");
            let id = id?;
            if let Some(Open::Upload { temp, .. }) = open.remove(&id) {
                let _ = fs::remove_file(temp);
            }
            Some(FileEvent::Failed {
                id,
                error: "internal error in the file thread".into(),
            })
        });
        if let Some(event) = event {
            if events.send(event).is_err() {
                break;
            }
            if let Err(e) = waker.wake() {
                log::error!("waking the reactor failed: {e}");
            }
        }
    }
    // Shutting down: unfinished uploads leave nothing behind.
    for (_, entry) in open {
        if let Open::Upload { temp, .. } = entry {
            let _ = fs::remove_file(temp);
        }
    }
}

impl FileTask {
    /// The transfer this task belongs to, if any.
    fn transfer_id(&self) -> Option<u64> {
        match self {
            FileTask::Create { id, .. }
            | FileTask::Write { id, .. }
            | FileTask::Finish { id, .. }
            | FileTask::Abort { id }
            | FileTask::OpenRead { id, .. }
            | FileTask::Read { id, .. }
            | FileTask::Close { id } => Some(*id),
            FileTask::Delete { .. } => None,
        }
    }
}

/// Does one task; the event to report, if any.
fn do_task(task: FileTask, open: &mut HashMap<u64, Open>) -> Option<FileEvent> {
    match task {
        FileTask::Create { id, dir } => match create_temp(&dir, id) {
            Ok((file, temp)) => {
                open.insert(id, Open::Upload { file, temp, dir });
                None
            }
            Err(e) => Some(FileEvent::Failed {
                id,
                error: format!("creating upload file: {e}"),
            }),
        },
        FileTask::Write { id, data } => match open.get_mut(&id) {
            Some(Open::Upload { file, .. }) => Some(match file.write_all(&data) {
                Ok(()) => FileEvent::Written { id, n: data.len() },
                Err(e) => FileEvent::Failed {
                    id,
                    error: format!("writing upload: {e}"),
                },
            }),
            _ => None,
        },
        FileTask::Finish { id, stored_name } => match open.remove(&id) {
            Some(Open::Upload { file, temp, dir }) => Some(match finish(file, &temp, &dir, &stored_name) {
                Ok(()) => FileEvent::Stored { id },
                Err(e) => {
                    let _ = fs::remove_file(&temp);
                    FileEvent::Failed {
                        id,
                        error: format!("storing upload: {e}"),
                    }
                }
            }),
            _ => None,
        },
        FileTask::Abort { id } => {
            if let Some(Open::Upload { temp, .. }) = open.remove(&id) {
                if let Err(e) = fs::remove_file(&temp) {
                    log::error!("removing aborted upload {}: {e}", temp.display());
                }
            }
            None
        }
        FileTask::OpenRead { id, path } => match File::open(&path) {
            Ok(file) => {
                open.insert(id, Open::Download { file });
                None
            }
            Err(e) => Some(FileEvent::Failed {
                id,
                error: format!("opening {}: {e}", path.display()),
            }),
        },
        FileTask::Read { id, len } => match open.get_mut(&id) {
            Some(Open::Download { file }) => {
                let mut data = vec![0u8; len];
                Some(match read_full(file, &mut data) {
                    Ok(n) if n > 0 => {
                        data.truncate(n);
                        FileEvent::Chunk { id, data }
                    }
                    Ok(_) => FileEvent::Failed {
                        id,
                        error: "file shorter than recorded".into(),
                    },
                    Err(e) => FileEvent::Failed {
                        id,
                        error: format!("reading: {e}"),
                    },
                })
            }
            _ => None,
        },
        FileTask::Close { id } => {
            open.remove(&id);
            None
        }
        FileTask::Delete { dir, stored_name } => {
            remove_stored(&dir, &stored_name);
            None
        }
    }
}

fn create_temp(dir: &Path, id: u64) -> io::Result<(File, PathBuf)> {
    fs::create_dir_all(dir)?;
    let temp = dir.join(format!("{TEMP_PREFIX}{id}-{}", new_stored_name()?));
    // Only the server's user may read what people uploaded.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    Ok((file, temp))
}

fn finish(file: File, temp: &Path, dir: &Path, stored_name: &str) -> io::Result<()> {
    file.sync_all()?;
    drop(file);
    fs::rename(temp, dir.join(stored_name))?;
    // The rename itself must survive a crash too.
    File::open(dir)?.sync_all()
}

fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize_name("report.pdf").as_deref(), Some("report.pdf"));
        assert_eq!(sanitize_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(
            sanitize_name("C:\\Users\\me\\cat.png").as_deref(),
            Some("cat.png")
        );
        assert_eq!(
            sanitize_name("bad\u{0}\nname\t.txt").as_deref(),
            Some("badname.txt")
        );
        assert_eq!(sanitize_name("dir/"), None);
        assert_eq!(sanitize_name(".."), None);
        assert_eq!(sanitize_name("\u{1}\u{2}"), None);
        let long = "é".repeat(200);
        let kept = sanitize_name(&long).unwrap();
        assert!(kept.len() <= MAX_NAME_BYTES && kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn stored_names_cannot_escape() {
        let name = new_stored_name().unwrap();
        assert!(is_stored_name(&name));
        assert!(!is_stored_name("../../../../etc/passwd00000000000"));
    }

    #[test]
    fn sweep_keeps_only_referenced_files() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("keep"), b"x").unwrap();
        fs::write(dir.path().join(".upload-1-abc"), b"x").unwrap();
        fs::write(dir.path().join("orphan"), b"x").unwrap();
        let referenced = HashSet::from(["keep".to_owned()]);
        let hour = std::time::Duration::from_secs(3600);
        assert_eq!(
            sweep(dir.path(), &referenced, Some(hour)).unwrap(),
            0,
            "another node's uploads stay"
        );
        assert_eq!(sweep(dir.path(), &referenced, None).unwrap(), 2);
        assert!(dir.path().join("keep").exists());
    }

    #[test]
    fn the_file_thread_survives_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), b"abc").unwrap();
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(Waker::new(poll.registry(), mio::Token(1)).unwrap());
        let (tasks, task_rx) = crossbeam_channel::unbounded();
        let (event_tx, events) = crossbeam_channel::unbounded();
        let thread = std::thread::spawn(move || run_file_thread(task_rx, event_tx, waker));
        let path = dir.path().join("f");
        tasks
            .send(FileTask::OpenRead {
                id: 1,
                path: path.clone(),
            })
            .unwrap();
        // A length no buffer can have: allocating it panics.
        tasks
            .send(FileTask::Read {
                id: 1,
                len: usize::MAX,
            })
            .unwrap();
        match events.recv().unwrap() {
            FileEvent::Failed { id: 1, .. } => {}
            other => panic!("expected the transfer to fail, got {other:?}"),
        }
        // The thread is still there for the next transfer.
        tasks.send(FileTask::OpenRead { id: 2, path }).unwrap();
        tasks.send(FileTask::Read { id: 2, len: 3 }).unwrap();
        match events.recv().unwrap() {
            FileEvent::Chunk { id: 2, data } => assert_eq!(data, b"abc"),
            other => panic!("expected a chunk, got {other:?}"),
        }
        drop(tasks);
        thread.join().unwrap();
    }
}
