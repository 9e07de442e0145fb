//! Rooms: create, list, join, add, leave, delete, rename, describe, search,
//! members, roles, bans. Permission rules follow the role ladder
//! owner > admin > moderator > simple: nobody acts on an equal or higher rank.

use std::sync::Arc;

use super::{validate, Ctx};
use crate::compat;
use crate::error::{Error, Result};
use crate::job::{Outcome, Push, RoomOrder};
use crate::model::{fold_name, now_ms, Role, Room, RoomType};
use crate::protocol::{
    AddMember, ErrorCode, GetRooms, Kind, LeaveBody, MemberAction, MemberActionBody, MemberBody, MembersBody,
    MessageBody, NewMemberBody, NewRoom, Outgoing, PeerBody, RoleBody, RoomBody, RoomDescBody, RoomIdBody,
    RoomNameBody, RoomRef, RoomsBody, SearchCh, SetRole, UpdRoomDesc, UpdRoomName,
};
use crate::store::{Audience, Departure, Store};

/// Longest room name, in characters.
pub const MAX_ROOM_NAME_CHARS: usize = 100;
/// Most rooms RQ_SEARCH_CH returns.
pub const MAX_SEARCH_ROOMS: usize = 50;

/// The room object as the given member sees it.
pub fn room_body(room: &Room, role: Option<Role>) -> RoomBody {
    RoomBody {
        id: room.id,
        name: room.name.clone(),
        desc: room.desc.clone(),
        customer_id: room.owner_id,
        date: room.created_at,
        room_type: room.room_type,
        role,
        power: room.power,
        unread: None,
        last_msg_id: None,
        mentions: None,
        peer: None,
    }
}

/// The room and the caller's role in it; refuses unknown rooms, non-members and the banned.
pub fn membership(store: &mut Store, room_id: i64, user_id: i64) -> Result<(Room, Role)> {
    let (room, role) = store
        .room_and_role(room_id, user_id)?
        .ok_or_else(|| Error::not_found(format!("no room with id {room_id}")))?;
    match role {
        None => Err(Error::forbidden("you are not a member of this room")),
        Some(Role::Banned) => Err(Error::client(ErrorCode::Banned, "you are banned from this room")),
        Some(role) => Ok((room, role)),
    }
}

/// The room's current members: who its pushes reach.
pub fn audience(ctx: &mut Ctx, room_id: i64) -> Result<Audience> {
    Ok(ctx.store.audience(room_id)?)
}

/// Answers the request with `body` broadcast to the room's current members.
pub fn broadcast<T: serde::Serialize + Send + Sync + 'static>(
    ctx: &mut Ctx,
    room_id: i64,
    kind: Kind,
    body: T,
) -> Result<Outcome> {
    Ok(Outcome::pushes(vec![Push::answer(
        audience(ctx, room_id)?,
        Outgoing::new(kind, body),
    )]))
}

/// A stored message to every member (the answer to its sender), marked
/// with its place in the room: the nodes of a cluster deliver a room's
/// messages in that order.
pub fn broadcast_message(ctx: &mut Ctx, room_id: i64, seq: i64, body: MessageBody) -> Result<Outcome> {
    let mut push = Push::answer(audience(ctx, room_id)?, Outgoing::new(Kind::Msg, body));
    push.order = Some(RoomOrder { room_id, seq });
    Ok(Outcome::pushes(vec![push]))
}

/// Just these users.
fn only(users: &[i64]) -> Audience {
    Arc::new(users.to_vec())
}

fn require(condition: bool, msg: &str) -> Result<()> {
    if condition {
        Ok(())
    } else {
        Err(Error::forbidden(msg))
    }
}

fn not_direct(room: &Room, what: &str) -> Result<()> {
    require(
        room.room_type != RoomType::Direct,
        &format!("direct-message rooms cannot {what}"),
    )
}

/// The current (not banned) role of a target user, or ER_NOT_FOUND.
fn target_role(store: &mut Store, room_id: i64, user_id: i64) -> Result<Role> {
    match store.role_in(room_id, user_id)? {
        Some(role) if role != Role::Banned => Ok(role),
        _ => Err(Error::not_found(format!(
            "user {user_id} is not a member of this room"
        ))),
    }
}

pub fn new_room(ctx: &mut Ctx, req: NewRoom) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    let name = validate::trimmed("name", &req.name, 1, MAX_ROOM_NAME_CHARS)?;
    let desc = validate::trimmed("desc", &req.desc, 0, validate::MAX_DESC_CHARS)?;
    let room_type = req.room_type.unwrap_or(RoomType::Global);
    if room_type == RoomType::Direct {
        return Err(Error::bad_request(
            "direct-message rooms are opened with RQ_OPEN_DM",
        ));
    }
    super::limit(
        ctx.shared,
        |r| &r.room,
        user_id,
        "you are creating rooms too fast",
    )?;
    let room = ctx
        .store
        .atomically(|s| s.create_room(user_id, name, desc, room_type, now_ms()))?;
    let msg = Outgoing::new(Kind::NewRoom, room_body(&room, Some(Role::Owner)));
    // The creator's other connections learn of the room too.
    Ok(Outcome::pushes(vec![Push::answer(only(&[user_id]), msg)]))
}

pub fn get_rooms(ctx: &mut Ctx, req: GetRooms) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    let rooms = ctx
        .store
        .rooms_of(user_id, req.date)?
        .iter()
        .map(|listing| {
            let peer = match listing.room.room_type {
                RoomType::Direct => ctx
                    .store
                    .direct_peer(listing.room.id, user_id)?
                    .map(|u| PeerBody {
                        user_id: u.id,
                        login: u.login,
                    }),
                _ => None,
            };
            Ok(RoomBody {
                unread: Some(listing.unread),
                last_msg_id: Some(listing.last_msg_id),
                mentions: Some(listing.mentions),
                peer,
                ..room_body(&listing.room, Some(listing.role))
            })
        })
        .collect::<Result<_>>()?;
    Ok(Outcome::reply(Outgoing::new(Kind::GetRooms, RoomsBody { rooms })))
}

pub fn join_room(ctx: &mut Ctx, req: RoomRef) -> Result<Outcome> {
    let session = ctx.user()?.clone();
    let (room, role, joined) = ctx.store.atomically(|s| {
        let room = s
            .room(req.room_id)?
            .ok_or_else(|| Error::not_found(format!("no room with id {}", req.room_id)))?;
        match s.role_in(room.id, session.user_id)? {
            Some(Role::Banned) => Err(Error::client(ErrorCode::Banned, "you are banned from this room")),
            Some(role) => Ok((room, role, false)),
            None => {
                require(
                    room.room_type == RoomType::Global,
                    "only global rooms can be joined; ask a member to add you",
                )?;
                s.add_member(room.id, session.user_id, Role::Simple, now_ms())?;
                Ok((room, Role::Simple, true))
            }
        }
    })?;
    let joined_msg = Outgoing::new(Kind::JoinRoom, room_body(&room, Some(role)));
    let mut pushes = vec![Push::answer(only(&[session.user_id]), joined_msg)];
    if joined {
        let new_member = NewMemberBody {
            room_id: room.id,
            user_id: session.user_id,
            login: session.login.clone(),
        };
        pushes.push(Push::notice(
            audience(ctx, room.id)?,
            Outgoing::new(Kind::NewMember, new_member),
        ));
    }
    Ok(Outcome::pushes(pushes))
}

pub fn add_member(ctx: &mut Ctx, req: AddMember) -> Result<Outcome> {
    let actor = ctx.user()?.user_id;
    let target = match (&req.user_id, &req.login) {
        (Some(id), _) => ctx.store.user_by_id(*id)?,
        (None, Some(login)) => ctx.store.user_by_login(login)?,
        (None, None) => return Err(Error::bad_request("give the user's `login` or `user_id`")),
    }
    .ok_or_else(|| Error::not_found("no such user"))?;
    let room = ctx.store.atomically(|s| {
        let (room, role) = membership(s, req.room_id, actor)?;
        not_direct(&room, "have members added")?;
        require(
            role.moderates(),
            "only the owner, admins and moderators add members",
        )?;
        match s.role_in(room.id, target.id)? {
            Some(Role::Banned) => Err(Error::client(
                ErrorCode::Banned,
                "that user is banned from this room; unban them first",
            )),
            Some(_) => Err(Error::client(ErrorCode::Conflict, "already a member")),
            None => {
                s.add_member(room.id, target.id, Role::Simple, now_ms())?;
                Ok(room)
            }
        }
    })?;
    let joined = Outgoing::new(Kind::JoinRoom, room_body(&room, Some(Role::Simple)));
    let new_member = NewMemberBody {
        room_id: room.id,
        user_id: target.id,
        login: target.login,
    };
    Ok(Outcome::pushes(vec![
        Push::notice(only(&[target.id]), joined),
        Push::answer(
            audience(ctx, room.id)?,
            Outgoing::new(Kind::NewMember, new_member),
        ),
    ]))
}

pub fn leave_room(ctx: &mut Ctx, req: RoomRef) -> Result<Outcome> {
    let session = ctx.user()?.clone();
    let (departure, files) = ctx.store.atomically(|s| {
        let (room, _) = membership(s, req.room_id, session.user_id)?;
        not_direct(&room, "be left")?;
        let files = s.stored_files_in_room(room.id)?;
        Ok::<_, Error>((s.leave_room(room.id, session.user_id)?, files))
    })?;
    if departure == Departure::RoomDeleted {
        ctx.remove_files.extend(files);
    }
    let left = Outgoing::new(
        Kind::LeaveRoom,
        LeaveBody {
            room_id: req.room_id,
            user_id: session.user_id,
            login: session.login.clone(),
        },
    );
    let new_owner = match departure {
        Departure::RoomDeleted => {
            return Ok(Outcome::pushes(vec![Push::answer(
                only(&[session.user_id]),
                left,
            )]))
        }
        Departure::Left { new_owner } => new_owner,
    };
    let remaining = audience(ctx, req.room_id)?;
    let mut told: Vec<i64> = remaining.as_ref().clone();
    told.push(session.user_id);
    let mut pushes = vec![Push::answer(Arc::new(told), left)];
    if let Some(owner) = new_owner {
        let role = RoleBody {
            room_id: req.room_id,
            user_id: owner,
            role: Role::Owner,
        };
        pushes.push(Push::notice(remaining, Outgoing::new(Kind::SetRole, role)));
    }
    Ok(Outcome::pushes(pushes))
}

pub fn del_room(ctx: &mut Ctx, req: RoomRef) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    let (members, files) = super::freeing_space(ctx, |store| {
        store.atomically(|s| {
            let (room, role) = membership(s, req.room_id, user_id)?;
            not_direct(&room, "be deleted")?;
            require(role == Role::Owner, "only the owner deletes a room")?;
            let members = s.member_ids(room.id)?;
            let files = s.stored_files_in_room(room.id)?;
            s.delete_room(room.id)?;
            Ok::<_, Error>((members, files))
        })
    })?;
    ctx.remove_files.extend(files);
    let msg = Outgoing::new(Kind::DelRoom, RoomIdBody { room_id: req.room_id });
    Ok(Outcome::pushes(vec![Push::answer(Arc::new(members), msg)]))
}

/// Checks the caller may edit the room's name or description.
fn editable_room(store: &mut Store, room_id: i64, user_id: i64) -> Result<Room> {
    let (room, role) = membership(store, room_id, user_id)?;
    not_direct(&room, "be renamed or described")?;
    require(
        role.administers(),
        "only the owner and admins change a room's name and description",
    )?;
    Ok(room)
}

pub fn update_name(ctx: &mut Ctx, req: UpdRoomName) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    let name = validate::trimmed("room_name", &req.room_name, 1, MAX_ROOM_NAME_CHARS)?;
    ctx.store.atomically(|s| {
        let room = editable_room(s, req.room_id, user_id)?;
        Ok::<_, Error>(s.rename_room(room.id, name)?)
    })?;
    let body = RoomNameBody {
        room_id: req.room_id,
        room_name: name.to_owned(),
    };
    broadcast(ctx, req.room_id, Kind::UpdRoomName, body)
}

pub fn update_desc(ctx: &mut Ctx, req: UpdRoomDesc) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    let desc = validate::trimmed("desc", &req.desc, 0, validate::MAX_DESC_CHARS)?;
    ctx.store.atomically(|s| {
        let room = editable_room(s, req.room_id, user_id)?;
        Ok::<_, Error>(s.set_room_desc(room.id, desc)?)
    })?;
    let body = RoomDescBody {
        room_id: req.room_id,
        desc: desc.to_owned(),
    };
    broadcast(ctx, req.room_id, Kind::UpdRoomDesc, body)
}

pub fn search(ctx: &mut Ctx, req: SearchCh) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    let prefix = req.name.trim();
    if prefix.chars().count() > MAX_ROOM_NAME_CHARS {
        return Err(Error::bad_request(format!(
            "name must be at most {MAX_ROOM_NAME_CHARS} characters"
        )));
    }
    let own_too = compat::search_lists_own_rooms(ctx.dialect);
    let rooms = ctx
        .store
        .search_global_rooms(&fold_name(prefix), user_id, MAX_SEARCH_ROOMS)?
        .iter()
        .filter(|(_, role)| own_too || role.is_none())
        .map(|(room, role)| room_body(room, *role))
        .collect();
    Ok(Outcome::reply(Outgoing::new(Kind::SearchCh, RoomsBody { rooms })))
}

pub fn members(ctx: &mut Ctx, req: RoomRef) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    membership(ctx.store, req.room_id, user_id)?;
    let presence = &ctx.shared.presence;
    let members = ctx
        .store
        .members(req.room_id)?
        .into_iter()
        .map(|m| MemberBody {
            id: m.user.id,
            user_id: m.user.id,
            online: presence.is_online(m.user.id),
            login: m.user.login,
            name: m.user.name,
            role: m.role,
        })
        .collect();
    let body = MembersBody {
        room_id: req.room_id,
        members,
    };
    Ok(Outcome::reply(Outgoing::new(Kind::GetMembers, body)))
}

pub fn set_role(ctx: &mut Ctx, req: SetRole) -> Result<Outcome> {
    let actor = ctx.user()?.user_id;
    match req.role {
        Role::Owner => return Err(Error::bad_request("ownership passes only when the owner leaves")),
        Role::Banned => return Err(Error::bad_request("use RQ_BAN_MEMBER to ban")),
        Role::Admin | Role::Moderator | Role::Simple => {}
    }
    ctx.store.atomically(|s| {
        let (room, actor_role) = membership(s, req.room_id, actor)?;
        not_direct(&room, "have roles")?;
        let current = target_role(s, room.id, req.user_id)?;
        require(req.user_id != actor, "you cannot change your own role")?;
        require(actor_role.administers(), "only the owner and admins set roles")?;
        require(
            actor_role.outranks(current),
            "you can only change the role of members below you",
        )?;
        require(
            actor_role == Role::Owner || (req.role != Role::Admin && current != Role::Admin),
            "only the owner grants or revokes admin",
        )?;
        Ok::<_, Error>(s.set_role(room.id, req.user_id, req.role)?)
    })?;
    let body = RoleBody {
        room_id: req.room_id,
        user_id: req.user_id,
        role: req.role,
    };
    broadcast(ctx, req.room_id, Kind::SetRole, body)
}

pub fn ban(ctx: &mut Ctx, req: MemberAction) -> Result<Outcome> {
    let actor = ctx.user()?.user_id;
    let told = ctx.store.atomically(|s| {
        let (room, actor_role) = membership(s, req.room_id, actor)?;
        not_direct(&room, "have bans")?;
        require(
            actor_role.moderates(),
            "only the owner, admins and moderators ban",
        )?;
        let current = match s.role_in(room.id, req.user_id)? {
            Some(Role::Banned) => return Err(Error::client(ErrorCode::Conflict, "already banned")),
            Some(role) => role,
            None => {
                return Err(Error::not_found(format!(
                    "user {} is not a member of this room",
                    req.user_id
                )))
            }
        };
        require(req.user_id != actor, "you cannot ban yourself")?;
        require(actor_role.outranks(current), "you can only ban members below you")?;
        // Told before the ban takes effect, so the banned user hears of it too.
        let told = s.member_ids(room.id)?;
        s.set_role(room.id, req.user_id, Role::Banned)?;
        Ok(told)
    })?;
    let body = MemberActionBody {
        room_id: req.room_id,
        user_id: req.user_id,
    };
    let msg = Outgoing::new(Kind::BanMember, body);
    Ok(Outcome::pushes(vec![Push::answer(Arc::new(told), msg)]))
}

pub fn unban(ctx: &mut Ctx, req: MemberAction) -> Result<Outcome> {
    let actor = ctx.user()?.user_id;
    ctx.store.atomically(|s| {
        let (room, actor_role) = membership(s, req.room_id, actor)?;
        require(
            actor_role.moderates(),
            "only the owner, admins and moderators unban",
        )?;
        if s.role_in(room.id, req.user_id)? != Some(Role::Banned) {
            return Err(Error::not_found(format!(
                "user {} is not banned here",
                req.user_id
            )));
        }
        Ok(s.remove_member(room.id, req.user_id)?)
    })?;
    let body = MemberActionBody {
        room_id: req.room_id,
        user_id: req.user_id,
    };
    let msg = Outgoing::new(Kind::UnbanMember, body);
    let mut told = audience(ctx, req.room_id)?.as_ref().clone();
    told.push(req.user_id);
    Ok(Outcome::pushes(vec![Push::answer(Arc::new(told), msg)]))
}
