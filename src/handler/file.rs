//! Files: authorizing uploads and downloads, and storing an upload's message.
//!
//! The bytes themselves move in the reactor and the file thread; handlers
//! only decide whether a transfer may start, and store the message once an
//! upload is safely on disk.

use super::message::{may_post, message_body, store_message, with_room_power};
use super::room::{broadcast_message, membership};
use super::Ctx;
use crate::auth;
use crate::disk::SpaceRefusal;
use crate::error::{Error, Result};
use crate::files;
use crate::job::{Outcome, StoreUpload, TransferStart};
use crate::model::{now_ms, Message, MsgType, StoredFile, User};
use crate::protocol::{DownloadBody, DownloadFile, ErrorCode, Kind, Outgoing, UploadFile};

/// The user a transfer acts for: the connection's log-in, else the request's token.
fn transfer_user(ctx: &mut Ctx, token: Option<&str>) -> Result<(i64, bool)> {
    if let Some(session) = ctx.session {
        return Ok((session.user_id, false));
    }
    let token = token.ok_or_else(|| Error::client(ErrorCode::Unauthorized, "log in or give a token"))?;
    let invalid = || Error::client(ErrorCode::AuthData, "invalid, expired or revoked token");
    let (hash, login) = auth::parse_token(token).ok_or_else(invalid)?;
    let now = now_ms();
    let ttl = ctx.shared.config.token_ttl_days as i64 * 24 * 60 * 60 * 1000;
    // A read: workers never write (a resume on the main connection keeps
    // the token's last use fresh).
    let user: User = ctx
        .store
        .token_user(&hash, login, now - ttl)?
        .ok_or_else(invalid)?;
    // Authorized by token alone: the connection closes when the transfer ends.
    Ok((user.id, true))
}

pub fn upload(ctx: &mut Ctx, req: UploadFile) -> Result<Outcome> {
    let (user_id, token_only) = transfer_user(ctx, req.token.as_deref())?;
    let limit = ctx.shared.config.max_file_bytes;
    if req.size < 1 {
        return Err(Error::bad_request("size must be at least 1 byte"));
    }
    if req.size as u64 > limit {
        return Err(Error::client(
            ErrorCode::TooLarge,
            format!("files are limited to {limit} bytes"),
        ));
    }
    let name = files::sanitize_name(&req.name).ok_or_else(|| {
        Error::bad_request("name must hold a file name, not only separators or control characters")
    })?;
    let (room, _) = membership(ctx.store, req.room_id, user_id)?;
    may_post(ctx.store, &room, user_id)?;
    super::limit(
        ctx.shared,
        |r| &r.msg,
        user_id,
        "you are sending messages too fast",
    )?;
    // Reserved now, so that parallel uploads cannot together pass the quota;
    // held by the transfer until its message is stored or it is given up.
    let stored = ctx.store.stored_bytes_of(user_id)?.max(0) as u64;
    let reservation = ctx
        .shared
        .disk
        .reserve_upload(user_id, req.size as u64, stored)
        .map_err(|refusal| match refusal {
            SpaceRefusal::Quota { quota } => Error::client(
                ErrorCode::TooLarge,
                format!("your files would exceed your quota of {quota} bytes"),
            ),
            SpaceRefusal::DiskFull => {
                log::warn!(
                    "upload of {} bytes refused: the data disk is nearly full",
                    req.size
                );
                Error::client(ErrorCode::TooLarge, "the server has no room for this file")
            }
        })?;
    Ok(Outcome {
        reply: Some(Outgoing::empty(Kind::ReadyRead)),
        transfer: Some(TransferStart::Upload {
            user_id,
            room_id: room.id,
            name,
            size: req.size as u64,
            reservation,
        }),
        close_after: token_only,
        ..Outcome::default()
    })
}

/// Stores the message of an upload that is on disk, and broadcasts it (on
/// the writer). If the message cannot be stored (the uploader lost the
/// right meanwhile), the file goes.
pub fn store_upload(ctx: &mut Ctx, req: StoreUpload) -> Result<Outcome> {
    let dir = files::files_dir(&ctx.shared.config.data_dir);
    let file = StoredFile {
        name: req.name,
        size: req.size,
        stored_name: req.stored_name,
    };
    let stored = ctx.store.atomically(|s| {
        let stored = store_message(
            s,
            req.room_id,
            req.user_id,
            &file.name,
            MsgType::File,
            Some(&file),
        )?;
        let login = s
            .user_by_id(req.user_id)?
            .map(|u| u.login)
            .ok_or_else(|| Error::Internal(format!("uploader {} does not exist", req.user_id)))?;
        Ok::<_, Error>((stored, login))
    });
    let (stored, login) = match stored {
        Ok(stored) => stored,
        Err(e) => {
            files::remove_stored(&dir, &file.stored_name);
            return Err(e);
        }
    };
    let msg = Message {
        id: stored.id,
        room_id: req.room_id,
        user_id: req.user_id,
        login,
        date: stored.date,
        body: file.name.clone(),
        msg_type: MsgType::File,
        edited: false,
        file: Some(file),
        reply_to: 0,
    };
    let sent = broadcast_message(
        ctx,
        req.room_id,
        stored.seq,
        message_body(msg, Default::default(), false),
    )?;
    with_room_power(ctx, req.room_id, sent)
}

pub fn download(ctx: &mut Ctx, req: DownloadFile) -> Result<Outcome> {
    let (user_id, token_only) = transfer_user(ctx, req.token.as_deref())?;
    membership(ctx.store, req.room_id, user_id)?;
    let not_a_file = || Error::not_found(format!("no file message {} in room {}", req.msg_id, req.room_id));
    let msg = ctx
        .store
        .message(req.msg_id)?
        .filter(|m| m.room_id == req.room_id && m.msg_type == MsgType::File)
        .ok_or_else(not_a_file)?;
    let file = msg.file.ok_or_else(not_a_file)?;
    let path = files::files_dir(&ctx.shared.config.data_dir).join(&file.stored_name);
    let body = DownloadBody {
        size: file.size,
        name: file.name,
        room_id: req.room_id,
        msg_id: req.msg_id,
    };
    Ok(Outcome {
        reply: Some(Outgoing::new(Kind::DownloadFile, body)),
        transfer: Some(TransferStart::Download {
            path,
            size: file.size as u64,
        }),
        close_after: token_only,
        ..Outcome::default()
    })
}

/// RQ_READY_READ when no download is waiting for it.
pub fn stray_ready_read() -> Result<Outcome> {
    Err(Error::bad_request("no download is waiting for RQ_READY_READ"))
}
