//! Messages: send, edit, delete, clear, history pages, search, read markers.

use std::sync::Arc;

use super::mentions::mentioned_logins;
use super::room::{broadcast, broadcast_message, membership};
use super::{validate, Ctx};
use crate::compat;
use crate::error::{Error, Result};
use crate::job::{FilledGap, Gap, Outcome, Push, RoomOrder, RoomsNews};
use crate::model::now_ms;
use crate::model::{Message, MsgType, Room, RoomType, StoredFile};
use crate::protocol::{
    DelMsg, EditBody, EditMsg, ErrorCode, HistoryPage, Kind, MarkRead, MessageBody, MessageText,
    MessagesBody, MsgRefBody, Outgoing, ReactionCount, ReplyPreview, RoomIdBody, RoomPowerBody, RoomRef,
    SearchBody, SearchMsgs, SendMsg,
};
use crate::store::{Extras, HistoryQuery, SearchScope, Store, Stored};

/// Most messages one round of retention deletes (a short transaction: chat
/// waits for it no longer than for an ordinary batch).
pub const RETENTION_BATCH: usize = 500;

const MS_PER_DAY: i64 = 24 * 60 * 60 * 1000;

/// Retention: deletes a batch of the messages older than `retention_days`
/// (with their files, after the commit), and asks to run again soon while
/// more are waiting. Members are not told: expired messages leave history
/// and search.
pub fn expire(ctx: &mut Ctx) -> Result<Outcome> {
    let days = ctx.shared.config.retention_days;
    if days == 0 {
        return Ok(Outcome::default());
    }
    let before = now_ms() - i64::from(days) * MS_PER_DAY;
    let (deleted, files) = super::freeing_space(ctx, |store| {
        store
            .atomically(|s| s.expire_messages(before, RETENTION_BATCH))
            .map_err(Error::from)
    })?;
    if deleted > 0 {
        log::info!(
            "retention: deleted {deleted} messages older than {days} days ({} files)",
            files.len()
        );
    }
    ctx.remove_files.extend(files);
    Ok(Outcome {
        again: deleted == RETENTION_BATCH,
        ..Outcome::default()
    })
}

/// Messages in a history page when the client does not say.
pub const DEFAULT_PAGE: i64 = 50;
/// The largest history page.
pub const MAX_PAGE: i64 = 500;
/// How long a search waits for the writer to index what it stored.
const SEARCH_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(2);

/// Most messages a search returns.
pub const MAX_SEARCH_RESULTS: usize = 50;

/// The message object with its extras; its `power` is its own (design.md
/// §3). `mine_listed`: the caller's reactions are listed (replies to reads).
pub fn message_body(msg: Message, extras: Extras, mine_listed: bool) -> MessageBody {
    MessageBody {
        reply_to: msg.reply_to,
        reply_preview: extras
            .reply_preview
            .map(|(user_id, login, message)| ReplyPreview {
                user_id,
                login,
                message,
            }),
        reactions: extras
            .reactions
            .into_iter()
            .map(|(emoji, count)| ReactionCount { emoji, count })
            .collect(),
        my_reactions: mine_listed.then_some(extras.mine),
        mentions: extras.mentions,
        power: compat::message_power(&msg.body),
        message: MessageText {
            file_of: msg.file.is_some().then_some(msg.id),
            text: msg.body,
        },
        message_id: msg.id,
        room_id: msg.room_id,
        user_id: msg.user_id,
        login: msg.login,
        date: msg.date,
        msg_type: msg.msg_type,
        edited: msg.edited,
        file_name: msg.file.as_ref().map(|f| f.name.clone()),
        file_size: msg.file.as_ref().map(|f| f.size),
    }
}

/// Message objects for a page of messages, with their extras as `viewer`
/// sees them (a few indexed statements for the whole page).
pub fn bodies(store: &Store, msgs: Vec<Message>, viewer: i64) -> Result<Vec<MessageBody>> {
    let mut extras = store.extras(&msgs, viewer)?;
    Ok(msgs
        .into_iter()
        .map(|m| {
            let e = extras.remove(&m.id).unwrap_or_default();
            message_body(m, e, true)
        })
        .collect())
}

/// Adds to an outcome the room's new `power`, RQ_UPD_ROOM_POWR, for its
/// members (only old clients take it: `compat::push_allowed`). On the
/// writer, after the write that changed it; the room comes from memory.
pub fn with_room_power(ctx: &mut Ctx, room_id: i64, mut outcome: Outcome) -> Result<Outcome> {
    let Some((room, _)) = ctx.store.room_and_role(room_id, 0)? else {
        return Ok(outcome);
    };
    let body = RoomPowerBody {
        room_id,
        power: room.power,
    };
    let to = super::room::audience(ctx, room_id)?;
    outcome
        .pushes
        .push(Push::notice(to, Outgoing::new(Kind::UpdRoomPowr, body)));
    Ok(outcome)
}

/// A gap in what this node of a cluster heard of a room: the messages the
/// store still has, as pushes to the room's members in their order.
pub fn fill_gap(ctx: &mut Ctx, gap: Gap) -> Result<Outcome> {
    let found = ctx
        .store
        .messages_by_seq(gap.room_id, gap.after, gap.before, gap.after_id)?;
    let audience = super::room::audience(ctx, gap.room_id)?;
    let seqs: Vec<i64> = found.iter().map(|(seq, _)| *seq).collect();
    let msgs: Vec<Message> = found.into_iter().map(|(_, msg)| msg).collect();
    let mut extras = ctx.store.extras(&msgs, 0)?;
    let pushes = msgs
        .into_iter()
        .zip(seqs)
        .map(|(msg, seq)| {
            let extra = extras.remove(&msg.id).unwrap_or_default();
            let mut push = Push::notice(
                audience.clone(),
                Outgoing::new(Kind::Msg, message_body(msg, extra, false)),
            );
            push.order = Some(RoomOrder {
                room_id: gap.room_id,
                seq,
            });
            push
        })
        .collect();
    Ok(Outcome {
        rooms_news: Some(RoomsNews::Filled(FilledGap { gap, pushes })),
        ..Outcome::default()
    })
}

/// The rooms with messages whose ids are above `after_id`, and the newest
/// of each (a cluster node's check for messages the bus did not bring).
pub fn room_tails(ctx: &mut Ctx, after_id: i64) -> Result<Outcome> {
    Ok(Outcome {
        rooms_news: Some(RoomsNews::Tails(ctx.store.room_tails(after_id)?)),
        ..Outcome::default()
    })
}

/// Beyond membership: in a direct-message room, only while still friends.
pub fn may_post(store: &Store, room: &Room, user_id: i64) -> Result<()> {
    if room.room_type != RoomType::Direct {
        return Ok(());
    }
    let still_friends = match store.direct_peer(room.id, user_id)? {
        Some(peer) => store.are_friends(user_id, peer.id)?,
        None => false,
    };
    if still_friends {
        Ok(())
    } else {
        Err(Error::forbidden(
            "you are no longer friends; add them again to write",
        ))
    }
}

/// Stores a message (a file's, with `file`) from a member who may post in
/// the room; returns where it landed. Call inside `atomically`: on the
/// writer the room comes from memory.
pub fn store_message(
    s: &mut Store,
    room_id: i64,
    user_id: i64,
    text: &str,
    msg_type: MsgType,
    file: Option<&StoredFile>,
) -> Result<Stored> {
    let (room, _) = membership(s, room_id, user_id)?;
    may_post(s, &room, user_id)?;
    let stored = match file {
        Some(file) => s.insert_file_message(room.id, user_id, file, now_ms())?,
        None => s.insert_message(room.id, user_id, text, msg_type, now_ms())?,
    };
    Ok(stored)
}

fn message_text<'a>(ctx: &Ctx, text: &'a str) -> Result<&'a str> {
    let max = ctx.shared.config.max_message_chars;
    let trimmed = text.trim();
    let n = trimmed.chars().count();
    if n > max {
        return Err(Error::client(
            ErrorCode::TooLarge,
            format!("a message holds at most {max} characters"),
        ));
    }
    validate::trimmed("message", trimmed, 1, max)
}

/// The message, which must belong to `room_id`.
pub fn message_in_room(store: &Store, room_id: i64, msg_id: i64) -> Result<Message> {
    store
        .message(msg_id)?
        .filter(|m| m.room_id == room_id)
        .ok_or_else(|| Error::not_found(format!("no message {msg_id} in room {room_id}")))
}

/// Stores a message and broadcasts it. The writer runs this inside its
/// batch: the broadcast leaves after the batch's commit, so a message anyone
/// saw is on disk. The room, the author's role and the audience come from
/// the writer's memory: the only statement is the insert.
pub fn send(ctx: &mut Ctx, req: SendMsg) -> Result<Outcome> {
    let session = ctx.user()?.clone();
    let msg_type = req.msg_type.unwrap_or(MsgType::Text);
    if !matches!(msg_type, MsgType::Text | MsgType::Sticker) {
        return Err(Error::bad_request(
            "msg_type must be DB_TEXT_MSG or DB_STICKER; files are sent with RQ_UPLOAD_FILE",
        ));
    }
    let text = message_text(ctx, &req.message)?;
    super::limit(
        ctx.shared,
        |r| &r.msg,
        session.user_id,
        "you are sending messages too fast",
    )?;
    let reply_to = req.reply_to.filter(|id| *id != 0);
    // Only text names people; a sticker's text is the sticker.
    let named = if msg_type == MsgType::Text {
        mentioned_logins(text)
    } else {
        Vec::new()
    };
    let (stored, reply_preview, mentions) = ctx.store.atomically(|s| {
        let stored = store_message(s, req.room_id, session.user_id, text, msg_type, None)?;
        let id = stored.id;
        let preview = match reply_to {
            Some(original) => {
                let preview = s.reply_preview(req.room_id, original)?.ok_or_else(|| {
                    Error::not_found(format!("no message {original} in room {}", req.room_id))
                })?;
                s.set_reply_to(id, original)?;
                Some(preview)
            }
            None => None,
        };
        let mentions = if named.is_empty() {
            Vec::new()
        } else {
            let users = s.members_named(req.room_id, &named)?;
            s.insert_mentions(id, req.room_id, &users)?;
            users
        };
        Ok::<_, Error>((stored, preview, mentions))
    })?;
    let body = MessageBody {
        message_id: stored.id,
        room_id: req.room_id,
        user_id: session.user_id,
        login: session.login,
        date: stored.date,
        message: MessageText::plain(text),
        msg_type,
        edited: false,
        power: compat::message_power(text),
        file_name: None,
        file_size: None,
        reply_to: reply_to.unwrap_or(0),
        reply_preview: reply_preview.map(|(user_id, login, message)| ReplyPreview {
            user_id,
            login,
            message,
        }),
        reactions: Vec::new(),
        my_reactions: None,
        mentions,
    };
    let sent = broadcast_message(ctx, req.room_id, stored.seq, body)?;
    with_room_power(ctx, req.room_id, sent)
}

pub fn edit(ctx: &mut Ctx, req: EditMsg) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    let text = message_text(ctx, &req.msg)?;
    ctx.store.atomically(|s| {
        membership(s, req.room_id, user_id)?;
        let msg = message_in_room(s, req.room_id, req.msg_id)?;
        if msg.user_id != user_id {
            return Err(Error::forbidden("only the author edits a message"));
        }
        if !matches!(msg.msg_type, MsgType::Text | MsgType::Sticker) {
            return Err(Error::forbidden("only text and sticker messages can be edited"));
        }
        Ok(s.edit_message(msg.id, text)?)
    })?;
    let body = EditBody {
        room_id: req.room_id,
        msg_id: req.msg_id,
        msg: text.to_owned(),
        power: compat::message_power(text),
    };
    let edited = broadcast(ctx, req.room_id, Kind::EditMsg, body)?;
    with_room_power(ctx, req.room_id, edited)
}

pub fn delete(ctx: &mut Ctx, req: DelMsg) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    let file = super::freeing_space(ctx, |store| {
        store.atomically(|s| {
            let (_, role) = membership(s, req.room_id, user_id)?;
            let msg = message_in_room(s, req.room_id, req.msg_id)?;
            let moderator = role.moderates();
            if msg.user_id != user_id && !moderator {
                return Err(Error::forbidden(
                    "only the author or the room's owner, admins and moderators delete a message",
                ));
            }
            s.delete_message(msg.id)?;
            Ok(msg.file)
        })
    })?;
    if let Some(file) = file {
        ctx.remove_files.push(file.stored_name);
    }
    let body = MsgRefBody {
        room_id: req.room_id,
        msg_id: req.msg_id,
    };
    let deleted = broadcast(ctx, req.room_id, Kind::DelMsg, body)?;
    with_room_power(ctx, req.room_id, deleted)
}

pub fn clear_history(ctx: &mut Ctx, req: RoomRef) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    let files = super::freeing_space(ctx, |store| {
        store.atomically(|s| {
            let (_, role) = membership(s, req.room_id, user_id)?;
            if !role.administers() {
                return Err(Error::forbidden(
                    "only the owner and admins clear a room's history",
                ));
            }
            let files = s.stored_files_in_room(req.room_id)?;
            s.clear_history(req.room_id)?;
            Ok(files)
        })
    })?;
    ctx.remove_files.extend(files);
    let body = RoomIdBody { room_id: req.room_id };
    let cleared = broadcast(ctx, req.room_id, Kind::DelHist, body)?;
    with_room_power(ctx, req.room_id, cleared)
}

fn page_size(count: Option<i64>) -> Result<usize> {
    match count {
        None => Ok(DEFAULT_PAGE as usize),
        Some(n) if n >= 1 => Ok(n.min(MAX_PAGE) as usize),
        Some(_) => Err(Error::bad_request("count must be at least 1")),
    }
}

fn history_reply(ctx: &mut Ctx, kind: Kind, room_id: i64, query: HistoryQuery) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    super::limit(
        ctx.shared,
        |r| &r.read,
        user_id,
        "you are reading history too fast",
    )?;
    membership(ctx.store, room_id, user_id)?;
    let page = ctx.store.history(room_id, &query)?;
    let messages = bodies(ctx.store, page, user_id)?;
    Ok(Outcome::reply(Outgoing::new(
        kind,
        MessagesBody { room_id, messages },
    )))
}

/// RQ_GET_NEW_MSGS: the newest messages after `after_id`, else after `date`.
pub fn get_new(ctx: &mut Ctx, req: HistoryPage) -> Result<Outcome> {
    let query = HistoryQuery {
        after_id: req.after_id,
        after_date: if req.after_id.is_some() {
            None
        } else {
            req.date.filter(|d| *d > 0)
        },
        limit: page_size(req.count)?,
        ..HistoryQuery::default()
    };
    history_reply(ctx, Kind::GetNewMsgs, req.room_id, query)
}

/// RQ_OLD_MSGS: the newest messages before `before_id`, else before `date`,
/// and after `after_id` when given.
pub fn get_old(ctx: &mut Ctx, req: HistoryPage) -> Result<Outcome> {
    let query = HistoryQuery {
        before_id: req.before_id,
        before_date: if req.before_id.is_some() {
            None
        } else {
            req.date.filter(|d| *d > 0)
        },
        after_id: req.after_id,
        limit: page_size(req.count)?,
        ..HistoryQuery::default()
    };
    history_reply(ctx, Kind::OldMsgs, req.room_id, query)
}

pub fn search(ctx: &mut Ctx, req: SearchMsgs) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    super::limit(ctx.shared, |r| &r.read, user_id, "you are searching too fast")?;
    if req.msg.chars().count() > ctx.shared.config.max_message_chars {
        return Err(Error::client(ErrorCode::TooLarge, "search text too long"));
    }
    let scope = match req.room_id {
        Some(room_id) => {
            membership(ctx.store, room_id, user_id)?;
            SearchScope::Room(room_id)
        }
        None => SearchScope::RoomsOf(user_id),
    };
    // The writer indexes behind itself; a search first has it catch up, so
    // every message acknowledged before the search can be found.
    if ctx.store.search_is_behind()? && !ctx.shared.writer.catch_up_search(SEARCH_CATCH_UP) {
        log::warn!("the search index did not catch up within {SEARCH_CATCH_UP:?}; searching what is indexed");
    }
    let found = ctx.store.search_messages(&req.msg, scope, MAX_SEARCH_RESULTS)?;
    let msgs = bodies(ctx.store, found, user_id)?;
    let body = SearchBody {
        room_id: req.room_id,
        msgs,
    };
    Ok(Outcome::reply(Outgoing::new(Kind::SearchMsgs, body)))
}

pub fn mark_read(ctx: &mut Ctx, req: MarkRead) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    let marker = ctx.store.atomically(|s| {
        membership(s, req.room_id, user_id)?;
        Ok::<_, Error>(s.mark_read(req.room_id, user_id, req.msg_id)?)
    })?;
    let body = MsgRefBody {
        room_id: req.room_id,
        msg_id: marker,
    };
    // The caller's other connections (other devices) learn the marker too.
    Ok(Outcome::pushes(vec![Push::answer(
        Arc::new(vec![user_id]),
        Outgoing::new(Kind::MarkRead, body),
    )]))
}
