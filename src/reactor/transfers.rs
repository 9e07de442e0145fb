//! File transfers on the reactor: starting and ending them, moving their
//! bytes to and from the file thread in bounded chunks, storing a finished
//! upload's message, and giving up on idle ones.

use std::path::PathBuf;
use std::time::Instant;

use crossbeam_channel::TrySendError;
use mio::Token;

use super::{conn_id, Reactor};
use crate::disk::QuotaReservation;
use crate::files::{self, FileEvent, FileTask};
use crate::job::{Task, NO_CONN};
use crate::protocol::{ErrorCode, Kind, Outgoing, ReqId};
use crate::transfer::{Download, Transfer, Upload, CHUNK};

/// What an upload starts with.
pub(super) struct NewUpload {
    pub user_id: i64,
    pub room_id: i64,
    pub name: String,
    pub size: u64,
    pub reservation: QuotaReservation,
}

impl Reactor {
    fn new_transfer(&mut self, token: Token) -> u64 {
        let id = self.next_transfer;
        self.next_transfer += 1;
        self.transfers.insert(id, token);
        id
    }

    /// The upload was granted: the file thread opens its file, and the
    /// connection takes raw bytes. The request stays open until the message
    /// is stored: its answer is the RQ_MSG broadcast, which carries `req_id`.
    pub(super) fn start_upload(
        &mut self,
        token: Token,
        new: NewUpload,
        req_id: Option<ReqId>,
        close_after: bool,
    ) {
        let id = self.new_transfer(token);
        self.file_backlog.push_back(FileTask::Create {
            id,
            dir: self.files_dir.clone(),
        });
        if let Some(conn) = self.conns.get_mut(&token) {
            let upload = Upload {
                id,
                user_id: new.user_id,
                room_id: new.room_id,
                name: new.name,
                size: new.size,
                handed: 0,
                written: 0,
                stored_name: None,
                last_activity: Instant::now(),
                req_id,
                reservation: new.reservation,
            };
            conn.begin_upload(upload, close_after);
        }
    }

    /// The download was granted: the file is opened, and its bytes go out
    /// once the client sends RQ_READY_READ.
    pub(super) fn start_download(&mut self, token: Token, path: PathBuf, size: u64, close_after: bool) {
        let id = self.new_transfer(token);
        self.file_backlog.push_back(FileTask::OpenRead { id, path });
        if let Some(conn) = self.conns.get_mut(&token) {
            let download = Download {
                id,
                size,
                requested: 0,
                queued: 0,
                last_activity: Instant::now(),
            };
            conn.offer_download(download, close_after);
        }
    }

    /// Moves an upload's bytes from the connection's buffer to the file thread.
    pub(super) fn pump_upload(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        loop {
            let buffered = conn.buffered();
            let Some(upload) = conn.upload_mut() else {
                return;
            };
            if !upload.wants_bytes() || buffered == 0 {
                break;
            }
            let n = (buffered as u64).min(upload.remaining()).min(CHUNK as u64) as usize;
            upload.handed += n as u64;
            upload.last_activity = Instant::now();
            let id = upload.id;
            let data = conn.take_raw(n);
            self.file_backlog.push_back(FileTask::Write { id, data });
        }
        let Some(upload) = conn.upload_mut() else {
            return;
        };
        if upload.remaining() == 0 && upload.stored_name.is_none() {
            match files::new_stored_name() {
                Ok(stored_name) => {
                    upload.stored_name = Some(stored_name.clone());
                    let id = upload.id;
                    self.file_backlog.push_back(FileTask::Finish { id, stored_name });
                }
                Err(e) => conn.doom(format!("no name for an upload: {e}")),
            }
        }
    }

    /// Asks the file thread for a download's next chunk once the client
    /// has taken most of what was queued.
    pub(super) fn request_chunk(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        let pending_out = conn.pending_out();
        if let Some(d) = conn.download_mut() {
            if d.wants_chunk(pending_out) {
                let len = d.next_chunk_len();
                d.requested += len as u64;
                self.file_backlog.push_back(FileTask::Read { id: d.id, len });
            }
        }
    }

    /// Ends a download (done, or given up): back to lines, held pushes released.
    pub(super) fn end_download(&mut self, token: Token) {
        let Some(conn) = self.conns.get_mut(&token) else {
            return;
        };
        if let Some(transfer) = conn.end_transfer() {
            self.transfers.remove(&transfer.id());
            self.file_backlog.push_back(FileTask::Close { id: transfer.id() });
        }
    }

    /// What closing a connection leaves of its transfer: an upload whose
    /// every byte arrived is stored all the same (old clients close right
    /// after sending); anything else is given up.
    pub(super) fn abandon_transfer(&mut self, transfer: Transfer) {
        self.transfers.remove(&transfer.id());
        match transfer {
            Transfer::Upload(upload) if upload.remaining() == 0 => {
                self.orphan_uploads.insert(upload.id, upload);
            }
            Transfer::Upload(upload) => self.file_backlog.push_back(FileTask::Abort { id: upload.id }),
            Transfer::AwaitReady(d) | Transfer::Download(d) => {
                self.file_backlog.push_back(FileTask::Close { id: d.id })
            }
        }
    }

    /// Hands queued tasks to the file thread without ever waiting for it.
    pub(super) fn flush_file_backlog(&mut self) {
        while let Some(task) = self.file_backlog.pop_front() {
            match self.file_tasks.try_send(task) {
                Ok(()) => {}
                Err(TrySendError::Full(task)) => {
                    self.file_backlog.push_front(task);
                    return;
                }
                Err(TrySendError::Disconnected(_)) => {
                    log::error!(
                        "the file thread is gone; {} file tasks dropped",
                        self.file_backlog.len() + 1
                    );
                    self.file_backlog.clear();
                    return;
                }
            }
        }
    }

    pub(super) fn drain_file_events(&mut self) {
        let mut touched = Vec::new();
        while let Ok(event) = self.file_events.try_recv() {
            match event {
                FileEvent::Written { id, n } => {
                    let Some(&token) = self.transfers.get(&id) else {
                        continue;
                    };
                    if let Some(upload) = self.conns.get_mut(&token).and_then(|c| c.upload_mut()) {
                        upload.written += n as u64;
                        touched.push(token);
                    }
                }
                FileEvent::Stored { id } => self.upload_stored(id, &mut touched),
                FileEvent::Chunk { id, data } => {
                    let Some(&token) = self.transfers.get(&id) else {
                        continue;
                    };
                    let Some(conn) = self.conns.get_mut(&token) else {
                        continue;
                    };
                    let Some(d) = conn.download_mut() else {
                        continue;
                    };
                    d.queued += data.len() as u64;
                    d.last_activity = Instant::now();
                    let done = d.queued == d.size;
                    conn.queue(&data);
                    if done {
                        self.end_download(token);
                    }
                    touched.push(token);
                }
                FileEvent::Failed { id, error } => {
                    log::error!("transfer {id} failed: {error}");
                    self.orphan_uploads.remove(&id);
                    let Some(token) = self.transfers.remove(&id) else {
                        continue;
                    };
                    if let Some(conn) = self.conns.get_mut(&token) {
                        if let Some(upload) = conn.upload_mut() {
                            let req_id = upload.req_id.take();
                            let msg = Outgoing::error(
                                ErrorCode::Internal,
                                "storing the file failed",
                                Some(Kind::UploadFile),
                            );
                            conn.reply(&msg, req_id.as_ref());
                        }
                        conn.fail_transfer();
                        touched.push(token);
                    }
                }
            }
        }
        for token in touched {
            self.service(token);
        }
    }

    /// An upload is on disk: the writer stores its message.
    fn upload_stored(&mut self, id: u64, touched: &mut Vec<Token>) {
        log::debug!("upload {id} is on disk");
        let token = self.transfers.remove(&id);
        let on_conn = token.and_then(|t| {
            let message = self.conns.get_mut(&t)?.upload_on_disk()?;
            Some((message, t))
        });
        let (message, requester) = match on_conn {
            Some((message, t)) => {
                touched.push(t);
                (message, t)
            }
            // Its client closed right after the last byte: stored all the same.
            None => match self.orphan_uploads.remove(&id) {
                Some(upload) => (upload.into_stored().0, Token(NO_CONN as usize)),
                None => return,
            },
        };
        log::debug!("upload {id}: storing its message (conn {})", requester.0);
        self.write(Task::StoreUpload {
            conn: conn_id(requester),
            upload: message,
        });
    }

    /// Closes connections whose transfer moved nothing for too long.
    pub(super) fn expire_transfers(&mut self) {
        if self.transfers.is_empty() {
            return;
        }
        let now = Instant::now();
        let idle = self.limits.transfer_idle;
        let stale: Vec<Token> = self
            .transfers
            .values()
            .filter(|token| {
                self.conns
                    .get(token)
                    .and_then(|c| c.last_activity())
                    .is_some_and(|t| now.duration_since(t) >= idle)
            })
            .copied()
            .collect();
        for token in stale {
            let secs = idle.as_secs_f64();
            self.close(token, &format!("transfer idle for {secs} s"));
        }
    }
}
