//! Friends, direct messages and presence: the ngobrol features.

use std::sync::Arc;

use super::room::room_body;
use super::Ctx;
use crate::error::{Error, Result};
use crate::job::{Outcome, Push};
use crate::model::{now_ms, Role, User};
use crate::protocol::{
    ErrorCode, FriendBody, FriendsBody, Kind, OpenDmBody, Outgoing, PeerBody, PresenceBody, RoomBody, UserRef,
};

fn peer(user: &User) -> PeerBody {
    PeerBody {
        user_id: user.id,
        login: user.login.clone(),
    }
}

/// The caller's connections learn about `friend`, and the friend's about the caller.
fn tell_both(kind: Kind, me: &User, friend: &User) -> Outcome {
    Outcome::pushes(vec![
        Push::answer(Arc::new(vec![me.id]), Outgoing::new(kind, peer(friend))),
        Push::notice(Arc::new(vec![friend.id]), Outgoing::new(kind, peer(me))),
    ])
}

/// The other user named by login; refuses oneself and unknown logins.
fn other_user(ctx: &Ctx, login: &str) -> Result<User> {
    if ctx.user()?.login == login {
        return Err(Error::bad_request("that is you"));
    }
    ctx.store
        .user_by_login(login)?
        .ok_or_else(|| Error::not_found(format!("no user {login:?}")))
}

fn me(ctx: &Ctx) -> Result<User> {
    let user_id = ctx.user()?.user_id;
    ctx.store
        .user_by_id(user_id)?
        .ok_or_else(|| Error::Internal(format!("logged-in user {user_id} does not exist")))
}

pub fn add_friend(ctx: &mut Ctx, req: UserRef) -> Result<Outcome> {
    let friend = other_user(ctx, &req.login)?;
    let me = me(ctx)?;
    super::limit(
        ctx.shared,
        |r| &r.friend,
        me.id,
        "you are adding friends too fast",
    )?;
    let added = ctx.store.atomically(|s| {
        if s.refuses_friend(friend.id, me.id)? {
            return Err(Error::forbidden(format!(
                "{} removed you as a friend; only they can add you back",
                friend.login
            )));
        }
        Ok(s.add_friend(me.id, friend.id, now_ms())?)
    })?;
    if !added {
        return Err(Error::client(ErrorCode::Conflict, "already friends"));
    }
    Ok(tell_both(Kind::AddFriend, &me, &friend))
}

pub fn del_friend(ctx: &mut Ctx, req: UserRef) -> Result<Outcome> {
    let friend = other_user(ctx, &req.login)?;
    let me = me(ctx)?;
    if !ctx
        .store
        .atomically(|s| s.remove_friend(me.id, friend.id, now_ms()))?
    {
        return Err(Error::not_found("not friends"));
    }
    Ok(tell_both(Kind::DelFriend, &me, &friend))
}

pub fn get_friends(ctx: &mut Ctx) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    let friends = ctx
        .store
        .friends_of(user_id)?
        .into_iter()
        .map(|u| FriendBody {
            online: ctx.shared.presence.is_online(u.id),
            user_id: u.id,
            login: u.login,
            name: u.name,
        })
        .collect();
    Ok(Outcome::reply(Outgoing::new(
        Kind::GetFriends,
        FriendsBody { friends },
    )))
}

pub fn open_dm(ctx: &mut Ctx, req: UserRef) -> Result<Outcome> {
    let other = other_user(ctx, &req.login)?;
    let me = me(ctx)?;
    // Under the write lock, so two first requests (from either side) make one room.
    let (room_id, created) = ctx.store.atomically(|s| {
        if !s.are_friends(me.id, other.id)? {
            return Err(Error::forbidden(
                "direct messages are between friends; add them first",
            ));
        }
        match s.direct_room(me.id, other.id)? {
            Some(room_id) => Ok((room_id, false)),
            None => Ok((s.create_direct_room(&me, &other, now_ms())?, true)),
        }
    })?;
    let room = ctx
        .store
        .room(room_id)?
        .ok_or_else(|| Error::Internal(format!("direct room {room_id} vanished")))?;
    let mine = RoomBody {
        peer: Some(peer(&other)),
        ..room_body(&room, Some(Role::Simple))
    };
    let mut pushes = vec![Push::answer(
        Arc::new(vec![me.id]),
        Outgoing::new(Kind::OpenDm, OpenDmBody { room: mine }),
    )];
    if created {
        let theirs = RoomBody {
            peer: Some(peer(&me)),
            ..room_body(&room, Some(Role::Simple))
        };
        pushes.push(Push::notice(
            Arc::new(vec![other.id]),
            Outgoing::new(Kind::JoinRoom, theirs),
        ));
    }
    Ok(Outcome::pushes(pushes))
}

/// Tells a user's friends that the user came online or went offline (on
/// this node: each node of a cluster tells its own connections, as it sees
/// the user come and go across the nodes).
pub fn announce_presence(ctx: &mut Ctx, user_id: i64, online: bool) -> Result<Outcome> {
    let friends = ctx.store.friend_ids(user_id)?;
    if friends.is_empty() {
        return Ok(Outcome::default());
    }
    let body = PresenceBody { user_id, online };
    let mut push = Push::notice(Arc::new(friends), Outgoing::new(Kind::Presence, body));
    push.this_node_only = true;
    Ok(Outcome::pushes(vec![push]))
}
