//! Accounts: sign-up, log-in, token resume, log-out, profile, member info.

use super::{validate, Ctx};
use crate::auth;
use crate::error::{Error, Result};
use crate::job::{NewAccount, Outcome, Revoke, Session, Task};
use crate::model::{now_ms, User};
use crate::protocol::{
    DescBody, ErrorCode, Kind, LogIn, LogOut, LogOutBody, MemberInfo, MemberInfoBody, NameBody, Outgoing,
    SignUp, TokenBody, TokenResume, UpdUserDesc, UpdUserName,
};

const MS_PER_DAY: i64 = 24 * 60 * 60 * 1000;

/// The password field, checked for form and lower-cased.
fn password_digest(pass: &str) -> Result<String> {
    if auth::is_password_digest(pass) {
        Ok(pass.to_ascii_lowercase())
    } else {
        Err(Error::bad_request(
            "pass must be the SHA-256 of the password as 64 hex characters",
        ))
    }
}

/// Refuses to switch a logged-in connection to another user.
fn ensure_same_user(ctx: &Ctx, user_id: Option<i64>) -> Result<()> {
    match (ctx.session, user_id) {
        (Some(s), Some(id)) if s.user_id == id => Ok(()),
        (Some(_), _) => Err(Error::client(
            ErrorCode::ClientExists,
            "this connection is already logged in as another user",
        )),
        (None, _) => Ok(()),
    }
}

/// The RQ_TOKEN answer, and the session the connection takes.
fn logged_in(user: User, token: String, token_hash: [u8; 32]) -> Outcome {
    let session = Session {
        user_id: user.id,
        login: user.login.clone(),
        token_hash,
    };
    let body = TokenBody {
        token,
        login: user.login,
        name: user.name,
        desc: user.desc,
        user_id: user.id,
    };
    Outcome {
        reply: Some(Outgoing::new(Kind::Token, body)),
        log_in: Some(session),
        ..Outcome::default()
    }
}

/// Issues a new token to a user whose password was verified (on the writer).
pub fn issue_token(ctx: &mut Ctx, user: User) -> Result<Outcome> {
    let (token, hash) = auth::new_token(&user.login).map_err(Error::Internal)?;
    ctx.store
        .atomically(|s| s.insert_token(&hash, user.id, now_ms()))?;
    Ok(logged_in(user, token, hash))
}

pub fn sign_up(ctx: &mut Ctx, req: SignUp) -> Result<Outcome> {
    ensure_same_user(ctx, None)?;
    validate::login(&req.login)?;
    let digest = password_digest(&req.pass)?;
    let name = validate::trimmed("name", &req.name, 0, validate::MAX_USER_NAME_CHARS)?;
    let name = if name.is_empty() { req.login.as_str() } else { name };
    let desc = validate::trimmed("desc", &req.desc, 0, validate::MAX_DESC_CHARS)?;
    if ctx.store.user_by_login(&req.login)?.is_some() {
        return Err(Error::client(ErrorCode::UserExists, "that login is taken"));
    }
    let pass_hash = ctx.shared.hasher.hash(&digest).map_err(Error::Internal)?;
    // The hash was the slow part; the account is created by the writer.
    ctx.shared.writer.submit(Task::CreateAccount(NewAccount {
        conn: ctx.conn,
        peer: ctx.peer,
        login: req.login.clone(),
        name: name.to_owned(),
        desc: desc.to_owned(),
        pass_hash,
    }))?;
    Ok(Outcome::deferred())
}

/// Creates a signed-up account and logs the connection in (on the writer).
pub fn create_account(ctx: &mut Ctx, account: NewAccount) -> Result<Outcome> {
    let user = ctx
        .store
        .atomically(|s| {
            s.create_user(
                &account.login,
                &account.name,
                &account.desc,
                &account.pass_hash,
                now_ms(),
            )
        })?
        .ok_or_else(|| Error::client(ErrorCode::UserExists, "that login is taken"))?;
    log::info!("user {} signed up from {}", user.login, ctx.peer);
    // The address an account was made from is its owner's: guesses
    // elsewhere cannot lock it out.
    ctx.shared.login_throttle.record_success(&user.login, ctx.peer);
    issue_token(ctx, user)
}

pub fn log_in(ctx: &mut Ctx, req: LogIn) -> Result<Outcome> {
    // A login that cannot exist is refused before it costs a hash or a
    // throttle entry (so 60 KB random logins cost the server nothing).
    if validate::login(&req.login).is_err() {
        return Err(Error::client(ErrorCode::AuthData, "wrong login or password"));
    }
    let throttle = &ctx.shared.login_throttle;
    if let Some(wait) = throttle.blocked_for(&req.login, ctx.peer) {
        return Err(Error::rate_limited("too many failed log-ins", wait));
    }
    let digest = password_digest(&req.pass)?;
    let verified = match ctx.store.user_with_pass_hash(&req.login)? {
        Some((user, stored)) => ctx.shared.hasher.verify(&digest, &stored).then_some(user),
        None => {
            ctx.shared.hasher.verify_decoy(&digest);
            None
        }
    };
    let Some(user) = verified else {
        throttle.record_failure(&req.login, ctx.peer);
        log::info!("failed log-in for {} from {}", req.login, ctx.peer);
        return Err(Error::client(ErrorCode::AuthData, "wrong login or password"));
    };
    ensure_same_user(ctx, Some(user.id))?;
    throttle.record_success(&req.login, ctx.peer);
    log::info!("user {} logged in from {}", user.login, ctx.peer);
    ctx.shared.writer.submit(Task::IssueToken {
        conn: ctx.conn,
        peer: ctx.peer,
        user,
    })?;
    Ok(Outcome::deferred())
}

/// The refusal of a token that is malformed, unknown, expired or revoked.
pub fn invalid_token() -> Error {
    Error::client(ErrorCode::AuthData, "invalid, expired or revoked token")
}

/// Tokens last used before this moment have expired.
pub fn token_not_before(ctx: &Ctx, now: i64) -> i64 {
    now - ctx.shared.config.token_ttl_days as i64 * MS_PER_DAY
}

pub fn resume(ctx: &mut Ctx, req: TokenResume) -> Result<Outcome> {
    let (hash, login) = auth::parse_token(&req.token).ok_or_else(invalid_token)?;
    let now = now_ms();
    let not_before = token_not_before(ctx, now);
    let user = ctx
        .store
        .use_token(&hash, login, not_before, now)?
        .ok_or_else(invalid_token)?;
    ensure_same_user(ctx, Some(user.id))?;
    Ok(logged_in(user, req.token, hash))
}

/// Deletes tokens that expired unused (they would otherwise stay until presented).
pub fn purge_expired_tokens(ctx: &mut Ctx) -> Result<Outcome> {
    let not_before = token_not_before(ctx, now_ms());
    let removed = ctx.store.purge_expired_tokens(not_before)?;
    if removed > 0 {
        log::info!("removed {removed} expired tokens");
    }
    Ok(Outcome::default())
}

pub fn log_out(ctx: &mut Ctx, req: LogOut) -> Result<Outcome> {
    let session = ctx.user()?.clone();
    let unknown = || Error::client(ErrorCode::AuthData, "not a token of this user");
    let (hash, _) = auth::parse_token(&req.token).ok_or_else(unknown)?;
    if !ctx.store.revoke_token(&hash, session.user_id)? {
        return Err(unknown());
    }
    let msg = Outgoing::new(Kind::LogOut, LogOutBody { token: req.token });
    Ok(Outcome {
        reply: Some(msg.clone()),
        revoke: Some(Revoke {
            user_id: session.user_id,
            token_hash: hash,
            notice: msg,
        }),
        ..Outcome::default()
    })
}

pub fn update_desc(ctx: &mut Ctx, req: UpdUserDesc) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    let desc = validate::trimmed("desc", &req.desc, 0, validate::MAX_DESC_CHARS)?;
    ctx.store.set_user_desc(user_id, desc)?;
    let body = DescBody {
        desc: desc.to_owned(),
    };
    Ok(Outcome::reply(Outgoing::new(Kind::UpdUserDesc, body)))
}

pub fn update_name(ctx: &mut Ctx, req: UpdUserName) -> Result<Outcome> {
    let user_id = ctx.user()?.user_id;
    let name = validate::trimmed("name", &req.name, 1, validate::MAX_USER_NAME_CHARS)?;
    ctx.store.set_user_name(user_id, name)?;
    let body = NameBody {
        name: name.to_owned(),
    };
    Ok(Outcome::reply(Outgoing::new(Kind::UpdUserName, body)))
}

pub fn member_info(ctx: &mut Ctx, req: MemberInfo) -> Result<Outcome> {
    let user = match (req.user_id, &req.login) {
        (Some(id), _) => ctx.store.user_by_id(id)?,
        (None, Some(login)) => ctx.store.user_by_login(login)?,
        (None, None) => return Err(Error::bad_request("give `user_id` or `login`")),
    }
    .ok_or_else(|| Error::not_found("no such user"))?;
    let body = MemberInfoBody {
        online: ctx.shared.presence.is_online(user.id),
        user_id: user.id,
        login: user.login,
        name: user.name,
        desc: user.desc,
    };
    Ok(Outcome::reply(Outgoing::new(Kind::MemberInfo, body)))
}
