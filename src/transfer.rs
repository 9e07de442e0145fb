//! Raw byte transfers on a connection: the state of an upload or a download.
//!
//! A connection (`conn`) may be moving the raw bytes of one file. The
//! reactor drives these transfers; the bytes go to and from disk through the
//! file thread (`files`), in bounded chunks, so memory per connection stays
//! bounded whatever the file size and the reactor never waits on a disk.

use std::time::Instant;

use crate::disk::QuotaReservation;
use crate::job::StoreUpload;
use crate::protocol::ReqId;

/// Bytes read from disk or handed to the disk per chunk.
pub const CHUNK: usize = 64 * 1024;
/// An upload's bytes handed to the file thread and not yet written, at most.
pub const UPLOAD_WINDOW: u64 = 4 * CHUNK as u64;
/// A download reads its next chunk only while less than this is queued.
pub const DOWNLOAD_LOW_WATER: usize = 4 * CHUNK;

/// A file's raw bytes moving on a connection.
#[derive(Debug)]
pub enum Transfer {
    /// Receiving a file's bytes.
    Upload(Upload),
    /// A download was offered; waiting for the client's RQ_READY_READ.
    /// Pushes are held back from here on, so that the bytes after the
    /// client's RQ_READY_READ are exactly the file.
    AwaitReady(Download),
    /// Sending a file's bytes.
    Download(Download),
}

impl Transfer {
    pub fn id(&self) -> u64 {
        match self {
            Transfer::Upload(u) => u.id,
            Transfer::AwaitReady(d) | Transfer::Download(d) => d.id,
        }
    }

    pub fn last_activity(&self) -> Instant {
        match self {
            Transfer::Upload(u) => u.last_activity,
            Transfer::AwaitReady(d) | Transfer::Download(d) => d.last_activity,
        }
    }
}

#[derive(Debug)]
pub struct Upload {
    pub id: u64,
    pub user_id: i64,
    pub room_id: i64,
    pub name: String,
    pub size: u64,
    /// Bytes handed to the file thread.
    pub handed: u64,
    /// Bytes the file thread has written.
    pub written: u64,
    /// Set once all bytes are handed over and the file is being stored.
    pub stored_name: Option<String>,
    pub last_activity: Instant,
    /// The upload request's id, carried by the RQ_MSG that answers it.
    pub req_id: Option<ReqId>,
    /// Its share of the user's quota: released when the upload is dropped.
    pub reservation: QuotaReservation,
}

impl Upload {
    /// Bytes still expected from the client.
    pub fn remaining(&self) -> u64 {
        self.size - self.handed
    }

    /// A finished upload, split into its message to store, its share of the
    /// quota (held until that is stored) and its request's id.
    pub fn into_stored(self) -> (StoreUpload, QuotaReservation, Option<ReqId>) {
        let message = StoreUpload {
            user_id: self.user_id,
            room_id: self.room_id,
            name: self.name,
            size: self.size as i64,
            stored_name: self.stored_name.unwrap_or_default(),
        };
        (message, self.reservation, self.req_id)
    }

    /// Whether more bytes may be taken from the socket now.
    pub fn wants_bytes(&self) -> bool {
        self.stored_name.is_none() && self.remaining() > 0 && self.handed - self.written < UPLOAD_WINDOW
    }
}

#[derive(Debug)]
pub struct Download {
    pub id: u64,
    pub size: u64,
    /// Bytes asked of the file thread.
    pub requested: u64,
    /// Bytes queued for the client.
    pub queued: u64,
    pub last_activity: Instant,
}

impl Download {
    /// Whether to ask for the next chunk, given the bytes already queued.
    pub fn wants_chunk(&self, pending_out: usize) -> bool {
        self.requested == self.queued && self.requested < self.size && pending_out < DOWNLOAD_LOW_WATER
    }

    pub fn next_chunk_len(&self) -> usize {
        (self.size - self.requested).min(CHUNK as u64) as usize
    }
}
