//! Disk space: per-user quotas that count uploads under way, the free-space
//! reserve below which uploads are refused, and a ballast file that keeps
//! deleting possible when the disk fills up anyway.
//!
//! Quotas are reserved when an upload starts (a [`QuotaReservation`] is held
//! by the transfer and released when it ends), so parallel uploads cannot
//! together exceed the quota. The ballast is a file of [`BALLAST_BYTES`] in
//! the data directory: when a delete fails because the disk is full, the
//! ballast is removed and the delete tried again (SQLite needs a little
//! space to delete), and it is put back once there is room.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// Size of the ballast file.
pub const BALLAST_BYTES: u64 = 8 << 20;
/// Name of the ballast file in the data directory.
const BALLAST_NAME: &str = ".space-reserve";

/// Bytes of uploads under way, per user and in all.
#[derive(Default, Debug)]
struct Reserved {
    by_user: HashMap<i64, u64>,
    total: u64,
}

/// Why an upload may not start.
#[derive(Debug, PartialEq, Eq)]
pub enum SpaceRefusal {
    /// The user's stored and reserved files would exceed the quota.
    Quota { quota: u64 },
    /// The disk would go below the free-space reserve.
    DiskFull,
}

/// The disk-space bookkeeping shared by the workers.
#[derive(Debug)]
pub struct DiskSpace {
    files_dir: PathBuf,
    ballast: PathBuf,
    quota: u64,
    reserve: u64,
    reserved: Arc<Mutex<Reserved>>,
}

/// Bytes held for one upload until it is stored or given up (on drop).
#[derive(Debug)]
pub struct QuotaReservation {
    reserved: Arc<Mutex<Reserved>>,
    user_id: i64,
    bytes: u64,
}

impl Drop for QuotaReservation {
    fn drop(&mut self) {
        let mut r = self.reserved.lock();
        r.total = r.total.saturating_sub(self.bytes);
        if let Some(n) = r.by_user.get_mut(&self.user_id) {
            *n = n.saturating_sub(self.bytes);
            if *n == 0 {
                r.by_user.remove(&self.user_id);
            }
        }
    }
}

/// Bytes available to the server's user on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path holds a NUL byte"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a valid NUL-terminated string and stat points to
    // writable memory of the right type; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok(stat.f_bavail as u64 * stat.f_frsize as u64)
}

/// Whether a database error means the disk is full.
pub fn is_disk_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
}

impl DiskSpace {
    /// `quota` 0 means no quota.
    pub fn new(data_dir: &Path, files_dir: &Path, quota: u64, reserve: u64) -> DiskSpace {
        DiskSpace {
            files_dir: files_dir.to_path_buf(),
            ballast: data_dir.join(BALLAST_NAME),
            quota,
            reserve,
            reserved: Arc::default(),
        }
    }

    /// Reserves `size` bytes for an upload by `user_id`, who has
    /// `stored` bytes of files already.
    pub fn reserve_upload(
        &self,
        user_id: i64,
        size: u64,
        stored: u64,
    ) -> Result<QuotaReservation, SpaceRefusal> {
        let free = match free_bytes(&self.files_dir) {
            Ok(free) => free,
            Err(e) => {
                log::error!("cannot tell the free space of {}: {e}", self.files_dir.display());
                return Err(SpaceRefusal::DiskFull);
            }
        };
        let mut r = self.reserved.lock();
        let mine = r.by_user.get(&user_id).copied().unwrap_or(0);
        if self.quota > 0 && stored + mine + size > self.quota {
            return Err(SpaceRefusal::Quota { quota: self.quota });
        }
        if free < r.total + size + self.reserve {
            return Err(SpaceRefusal::DiskFull);
        }
        *r.by_user.entry(user_id).or_insert(0) += size;
        r.total += size;
        Ok(QuotaReservation {
            reserved: self.reserved.clone(),
            user_id,
            bytes: size,
        })
    }

    /// Puts the ballast file back if it is missing and there is room for it
    /// beside the reserve. Returns whether it is in place.
    pub fn ensure_ballast(&self) -> bool {
        if self.ballast.exists() {
            return true;
        }
        let free = free_bytes(&self.files_dir).unwrap_or(0);
        if free < BALLAST_BYTES + self.reserve {
            return false;
        }
        match write_ballast(&self.ballast) {
            Ok(()) => true,
            Err(e) => {
                log::warn!("could not write {}: {e}", self.ballast.display());
                let _ = std::fs::remove_file(&self.ballast);
                false
            }
        }
    }

    /// Frees the ballast's space for a delete on a full disk. False if there
    /// was none to free.
    pub fn release_ballast(&self) -> bool {
        match std::fs::remove_file(&self.ballast) {
            Ok(()) => {
                log::warn!("the data disk is full: released the space reserve so deleting can go on");
                true
            }
            Err(_) => false,
        }
    }
}

fn write_ballast(path: &Path) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    // Written out, not sparse: the space must really be held.
    let chunk = vec![0u8; 1 << 20];
    for _ in 0..(BALLAST_BYTES >> 20) {
        file.write_all(&chunk)?;
    }
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_uploads_share_the_quota() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::new(dir.path(), dir.path(), 1000, 0);
        let a = space.reserve_upload(1, 600, 0).unwrap();
        assert_eq!(
            space.reserve_upload(1, 600, 0).unwrap_err(),
            SpaceRefusal::Quota { quota: 1000 }
        );
        assert!(space.reserve_upload(2, 600, 0).is_ok(), "quotas are per user");
        drop(a);
        assert!(
            space.reserve_upload(1, 600, 300).is_ok(),
            "released when the upload ends"
        );
        assert_eq!(
            space.reserve_upload(1, 500, 600).unwrap_err(),
            SpaceRefusal::Quota { quota: 1000 }
        );
    }

    #[test]
    fn the_free_space_reserve_refuses_uploads() {
        let dir = tempfile::tempdir().unwrap();
        // A reserve far above what is free: other tests deleting their
        // files in parallel must not make room between the two readings.
        let free = free_bytes(dir.path()).unwrap();
        let space = DiskSpace::new(dir.path(), dir.path(), 0, free + (1 << 40));
        assert_eq!(space.reserve_upload(1, 1, 0).unwrap_err(), SpaceRefusal::DiskFull);
        let roomy = DiskSpace::new(dir.path(), dir.path(), 0, 0);
        assert!(roomy.reserve_upload(1, 1, 0).is_ok());
    }

    #[test]
    fn the_ballast_is_written_released_and_restored() {
        let dir = tempfile::tempdir().unwrap();
        let space = DiskSpace::new(dir.path(), dir.path(), 0, 0);
        assert!(space.ensure_ballast());
        let len = std::fs::metadata(dir.path().join(BALLAST_NAME)).unwrap().len();
        assert_eq!(len, BALLAST_BYTES);
        assert!(space.release_ballast());
        assert!(!space.release_ballast());
        assert!(space.ensure_ballast());
    }
}
