//! Conversation features (design.md §7): reactions, mentions, typing and
//! pins (replies and mentions are made with RQ_MSG, in `message`).

use std::sync::Arc;

use super::message::{bodies, message_in_room};
use super::room::{audience, broadcast, membership};
use super::Ctx;
use crate::error::{Error, Result};
use crate::job::{Outcome, Push};
use crate::model::now_ms;
use crate::protocol::{
    ErrorCode, GetMentions, Kind, MentionsBody, Outgoing, Pin, PinBody, PinsBody, React, ReactBody, RoomRef,
    TypingBody,
};

/// Most different emoji on one message.
pub const MAX_EMOJI_KINDS: i64 = 20;
/// Longest emoji, in bytes.
pub const MAX_EMOJI_BYTES: usize = 32;
/// Most pinned messages in a room.
pub const MAX_PINS: i64 = 50;
/// Mentions per page when the client does not say, and at most.
const DEFAULT_MENTIONS: i64 = 50;
const MAX_MENTIONS_PAGE: i64 = 200;

fn check_emoji(emoji: &str) -> Result<()> {
    if emoji.is_empty() || emoji.len() > MAX_EMOJI_BYTES || emoji.chars().any(char::is_whitespace) {
        return Err(Error::bad_request(format!(
            "emoji must be 1 to {MAX_EMOJI_BYTES} bytes with no whitespace"
        )));
    }
    Ok(())
}

/// RQ_REACT: members add or remove their emoji on a message; everyone in
/// the room is told. Reactions count against the message rate.
pub fn react(ctx: &mut Ctx, req: React) -> Result<Outcome> {
    let session = ctx.user()?.clone();
    check_emoji(&req.emoji)?;
    super::limit(
        ctx.shared,
        |r| &r.msg,
        session.user_id,
        "you are reacting too fast",
    )?;
    ctx.store.atomically(|s| {
        membership(s, req.room_id, session.user_id)?;
        let msg = message_in_room(s, req.room_id, req.msg_id)?;
        if req.on {
            let (present, kinds) = s.reaction_kinds(msg.id, &req.emoji)?;
            if !present && kinds >= MAX_EMOJI_KINDS {
                return Err(Error::client(
                    ErrorCode::TooLarge,
                    format!("a message has at most {MAX_EMOJI_KINDS} different reactions"),
                ));
            }
        }
        s.react(msg.id, session.user_id, &req.emoji, req.on)?;
        Ok::<_, Error>(())
    })?;
    let body = ReactBody {
        room_id: req.room_id,
        msg_id: req.msg_id,
        user_id: session.user_id,
        login: session.login,
        emoji: req.emoji,
        on: req.on,
    };
    broadcast(ctx, req.room_id, Kind::React, body)
}

/// RQ_PIN: the owner, admins and moderators pin and unpin messages.
pub fn pin(ctx: &mut Ctx, req: Pin) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    ctx.store.atomically(|s| {
        let (_, role) = membership(s, req.room_id, user_id)?;
        if !role.moderates() {
            return Err(Error::forbidden(
                "only the owner, admins and moderators pin messages",
            ));
        }
        let msg = message_in_room(s, req.room_id, req.msg_id)?;
        let (pins, already) = s.pins_in(req.room_id, msg.id)?;
        if req.pinned && !already && pins >= MAX_PINS {
            return Err(Error::client(
                ErrorCode::TooLarge,
                format!("a room has at most {MAX_PINS} pinned messages; unpin one first"),
            ));
        }
        s.pin(req.room_id, msg.id, user_id, req.pinned, now_ms())?;
        Ok::<_, Error>(())
    })?;
    let body = PinBody {
        room_id: req.room_id,
        msg_id: req.msg_id,
        pinned: req.pinned,
        user_id,
    };
    broadcast(ctx, req.room_id, Kind::Pin, body)
}

/// RQ_GET_PINS: a room's pinned messages, most recently pinned first.
pub fn get_pins(ctx: &mut Ctx, req: RoomRef) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    super::limit(ctx.shared, |r| &r.read, user_id, "you are reading too fast")?;
    membership(ctx.store, req.room_id, user_id)?;
    let pinned = ctx.store.pinned(req.room_id)?;
    let msgs = bodies(ctx.store, pinned, user_id)?;
    Ok(Outcome::reply(Outgoing::new(
        Kind::GetPins,
        PinsBody {
            room_id: req.room_id,
            msgs,
        },
    )))
}

/// RQ_GET_MENTIONS: messages that name the caller, across their rooms.
pub fn get_mentions(ctx: &mut Ctx, req: GetMentions) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    super::limit(ctx.shared, |r| &r.read, user_id, "you are reading too fast")?;
    let count = match req.count {
        None => DEFAULT_MENTIONS,
        Some(n) if n >= 1 => n.min(MAX_MENTIONS_PAGE),
        Some(_) => return Err(Error::bad_request("count must be at least 1")),
    };
    let found = ctx.store.mentions_of(user_id, req.before_id, count as usize)?;
    let msgs = bodies(ctx.store, found, user_id)?;
    Ok(Outcome::reply(Outgoing::new(
        Kind::GetMentions,
        MentionsBody { msgs },
    )))
}

/// RQ_TYPING: answered to the sender; passed on to the room's other members
/// at most once per user and room every 3 s. Nothing is stored.
pub fn typing(ctx: &mut Ctx, req: RoomRef) -> Result<Outcome> {
    let session = ctx.user()?.clone();
    membership(ctx.store, req.room_id, session.user_id)?;
    let answer = Outgoing::new(
        Kind::Typing,
        TypingBody {
            room_id: req.room_id,
            user_id: None,
            login: None,
        },
    );
    let mut outcome = Outcome::reply(answer);
    let nodes = ctx.shared.presence.nodes_online(session.user_id);
    if ctx.shared.typing.pass(session.user_id, req.room_id, nodes) {
        let others: Vec<i64> = audience(ctx, req.room_id)?
            .iter()
            .copied()
            .filter(|u| *u != session.user_id)
            .collect();
        let notice = Outgoing::new(
            Kind::Typing,
            TypingBody {
                room_id: req.room_id,
                user_id: Some(session.user_id),
                login: Some(session.login),
            },
        );
        outcome.pushes.push(Push::notice(Arc::new(others), notice));
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_are_short_and_without_spaces() {
        assert!(check_emoji("👍").is_ok());
        assert!(check_emoji("").is_err());
        assert!(check_emoji("a b").is_err());
        assert!(check_emoji(&"x".repeat(33)).is_err());
    }
}
