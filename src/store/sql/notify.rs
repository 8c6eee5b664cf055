//! Mentions, follows, notifications and e-mail digests (contract §13),
//! written once for both drivers (see `conn.rs`).
//!
//! The notifications of a comment are written by [`after_comment`] in the
//! comment's own transaction (on the writer, see `writer.rs`), so a
//! comment is never stored without them, nor they without it. The rest are
//! the reads and the small writes of the REST calls and the mailer.

use super::conn::{args, Cols, Conn};
use super::rows::{user_json, user_of};
use crate::domain::chat::{excerpt, recipients};
use crate::domain::DomainError;
use crate::protocol::{Comment, Notification, NotificationReason, User};
use crate::store::{Digest, DirectoryUser, Result, StoreError, UserNotification};

/// The users of the directory that `ids` name, in order.
///
/// Errors: `invalid_input` on `mentions` when one is not in the tenant's
/// directory (another tenant's user gets the same answer as an unknown id).
pub(super) async fn resolve_mentions<C: Conn>(
    c: &mut C,
    tenant: &str,
    ids: &[String],
) -> Result<Vec<User>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let row = c
            .fetch_optional(
                "SELECT user_id, name, avatar FROM directory_users WHERE tenant_id = $1 AND user_id = $2",
                &args![tenant, id],
            )
            .await?;
        let Some(row) = row else {
            return Err(DomainError::invalid(
                "mentions",
                format!("mentions names {id}, who is not a signed-in user of this site"),
            )
            .into());
        };
        out.push(User {
            id: row.text("user_id")?,
            name: row.text("name")?,
            avatar: row.opt_text("avatar")?,
            anonymous: false,
        });
    }
    Ok(out)
}

/// The columns a [`Notification`] is read from.
const NOTIFICATION_COLUMNS: &str =
    "id, at, reason, url_id, chat_id, comment_id, by_json, excerpt, read";

fn notification_of(row: &impl Cols) -> Result<Notification> {
    let reason = match row.text("reason")?.as_str() {
        "mention" => NotificationReason::Mention,
        "reply" => NotificationReason::Reply,
        other => {
            return Err(StoreError::Unavailable(format!(
                "corrupt notification row: reason {other}"
            )))
        }
    };
    Ok(Notification {
        id: row.int("id")?.to_string(),
        at: row.int("at")?,
        reason,
        url_id: row.text("url_id")?,
        chat_id: row.text("chat_id")?.into(),
        comment_id: row.text("comment_id")?,
        by: user_of(&row.text("by_json")?)?,
        excerpt: row.text("excerpt")?,
        read: row.int("read")? != 0,
    })
}

async fn unread<C: Conn>(c: &mut C, tenant: &str, user_id: &str) -> Result<u64> {
    let row = c
        .fetch_optional(
            "SELECT COUNT(*) AS n FROM notifications WHERE tenant_id = $1 AND user_id = $2 AND read = 0",
            &args![tenant, user_id],
        )
        .await?;
    Ok(match row {
        Some(r) => u64::try_from(r.int("n")?).unwrap_or(0),
        None => 0,
    })
}

/// A new or edited comment, for [`after_comment`].
pub(super) struct Written<'a> {
    pub url_id: &'a str,
    pub chat_id: &'a str,
    pub comment: &'a Comment,
    /// Whom the comment mentioned before this write (an edit's old
    /// mentions; empty for a new comment).
    pub mentioned_before: &'a [User],
    pub new_comment: bool,
    /// The author is a signed-in user, so writing makes them follow.
    pub author_follows: bool,
}

/// Inside the comment's transaction: the author follows the chat, and the
/// users the comment notifies (see [`recipients`]) each get a notification.
pub(super) async fn after_comment<C: Conn>(
    c: &mut C,
    tenant: &str,
    w: &Written<'_>,
    now: i64,
) -> Result<Vec<UserNotification>> {
    let author = &w.comment.user;
    if w.author_follows && w.new_comment {
        c.exec(
            "INSERT INTO chat_followers (tenant_id, chat_id, user_id, following) VALUES ($1, $2, $3, 1) \
             ON CONFLICT (tenant_id, chat_id, user_id) DO UPDATE SET following = 1",
            &args![tenant, w.chat_id, &author.id],
        )
        .await?;
    }
    let followers: Vec<String> = if w.new_comment {
        c.fetch_all(
            "SELECT user_id FROM chat_followers WHERE tenant_id = $1 AND chat_id = $2 AND following = 1 \
             ORDER BY user_id",
            &args![tenant, w.chat_id],
        )
        .await?
        .iter()
        .map(|r| r.text("user_id"))
        .collect::<Result<_>>()?
    } else {
        Vec::new()
    };
    let mut who = recipients(w.comment, w.mentioned_before, &followers, w.new_comment);
    if !w.new_comment {
        // An edit tells a user of a comment once: mentioning them out and
        // back in again is not news.
        let mut fresh = Vec::with_capacity(who.len());
        for (user_id, reason) in who {
            let told = c
                .fetch_optional(
                    "SELECT 1 AS one FROM notifications WHERE tenant_id = $1 AND user_id = $2 \
                     AND chat_id = $3 AND comment_id = $4",
                    &args![tenant, &user_id, w.chat_id, &w.comment.id],
                )
                .await?
                .is_some();
            if !told {
                fresh.push((user_id, reason));
            }
        }
        who = fresh;
    }
    if who.is_empty() {
        return Ok(Vec::new());
    }
    let by = user_json(author);
    let text = excerpt(&w.comment.text);
    let mut out = Vec::with_capacity(who.len());
    for (user_id, reason) in who {
        // Mailed already, in effect, when the user cannot get e-mail now,
        // or when an anonymous visitor wrote it: nobody can send mail to a
        // site's users without signing in.
        let row = c
            .fetch_optional(
                "INSERT INTO notifications \
                 (tenant_id, user_id, at, reason, url_id, chat_id, comment_id, by_json, excerpt, read, mailed) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, CASE WHEN $10 = 1 THEN 1 ELSE \
                 COALESCE((SELECT CASE WHEN email IS NOT NULL AND mail_ok = 1 AND unsubscribed = 0 \
                 THEN 0 ELSE 1 END FROM directory_users WHERE tenant_id = $1 AND user_id = $2), 1) END) \
                 RETURNING id",
                &args![
                    tenant,
                    &user_id,
                    now,
                    reason.as_str(),
                    w.url_id,
                    w.chat_id,
                    &w.comment.id,
                    &by,
                    &text,
                    i64::from(author.anonymous),
                ],
            )
            .await?
            .ok_or_else(|| StoreError::Unavailable("the notification id was not returned".into()))?;
        let notification = Notification {
            id: row.int("id")?.to_string(),
            at: now,
            reason,
            url_id: w.url_id.to_owned(),
            chat_id: w.chat_id.into(),
            comment_id: w.comment.id.clone(),
            by: author.clone(),
            excerpt: text.clone(),
            read: false,
        };
        let unread = unread(c, tenant, &user_id).await?;
        out.push(UserNotification {
            user_id,
            notification,
            unread,
        });
    }
    Ok(out)
}

// ----------------------------------------------------------- directory ----

pub(super) async fn remember_user<C: Conn>(
    c: &mut C,
    tenant: &str,
    u: &DirectoryUser,
    now: i64,
) -> Result<()> {
    c.exec(
        "INSERT INTO directory_users \
         (tenant_id, user_id, name, name_fold, avatar, email, locale, mail_ok, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (tenant_id, user_id) DO UPDATE SET name = excluded.name, \
         name_fold = excluded.name_fold, avatar = excluded.avatar, email = excluded.email, \
         locale = excluded.locale, mail_ok = excluded.mail_ok, updated_at = excluded.updated_at",
        &args![
            tenant,
            &u.user.id,
            &u.user.name,
            &u.user.name.to_lowercase(),
            u.user.avatar.as_deref(),
            u.email.as_deref(),
            &u.locale,
            i64::from(u.mail_ok),
            now,
        ],
    )
    .await?;
    Ok(())
}

/// `prefix` as a `LIKE … ESCAPE '\'` pattern matching what starts with it.
fn prefix_pattern(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 1);
    for ch in prefix.to_lowercase().chars() {
        if matches!(ch, '\\' | '%' | '_') {
            p.push('\\');
        }
        p.push(ch);
    }
    p.push('%');
    p
}

pub(super) async fn find_users<C: Conn>(
    c: &mut C,
    tenant: &str,
    prefix: &str,
    limit: u32,
) -> Result<Vec<User>> {
    let rows = c
        .fetch_all(
            "SELECT user_id, name, avatar FROM directory_users \
             WHERE tenant_id = $1 AND name_fold LIKE $2 ESCAPE '\\' ORDER BY name_fold, user_id LIMIT $3",
            &args![tenant, &prefix_pattern(prefix), i64::from(limit)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(User {
                id: r.text("user_id")?,
                name: r.text("name")?,
                avatar: r.opt_text("avatar")?,
                anonymous: false,
            })
        })
        .collect()
}

async fn chat_exists<C: Conn>(c: &mut C, tenant: &str, chat_id: &str) -> Result<bool> {
    Ok(c.fetch_optional(
        "SELECT 1 AS one FROM chats WHERE tenant_id = $1 AND id = $2",
        &args![tenant, chat_id],
    )
    .await?
    .is_some())
}

pub(super) async fn set_following<C: Conn>(
    c: &mut C,
    tenant: &str,
    chat_id: &str,
    user_id: &str,
    following: bool,
) -> Result<bool> {
    if !chat_exists(c, tenant, chat_id).await? {
        return Ok(false);
    }
    c.exec(
        "INSERT INTO chat_followers (tenant_id, chat_id, user_id, following) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, chat_id, user_id) DO UPDATE SET following = excluded.following",
        &args![tenant, chat_id, user_id, i64::from(following)],
    )
    .await?;
    Ok(true)
}

pub(super) async fn following<C: Conn>(
    c: &mut C,
    tenant: &str,
    chat_id: &str,
    user_id: &str,
) -> Result<Option<bool>> {
    if !chat_exists(c, tenant, chat_id).await? {
        return Ok(None);
    }
    let row = c
        .fetch_optional(
            "SELECT following FROM chat_followers WHERE tenant_id = $1 AND chat_id = $2 AND user_id = $3",
            &args![tenant, chat_id, user_id],
        )
        .await?;
    Ok(Some(match row {
        Some(r) => r.int("following")? != 0,
        None => false,
    }))
}

// ------------------------------------------------------- notifications ----

pub(super) async fn notifications<C: Conn>(
    c: &mut C,
    tenant: &str,
    user_id: &str,
    before: Option<i64>,
    limit: u32,
) -> Result<(Vec<Notification>, u64)> {
    let sql = format!(
        "SELECT {NOTIFICATION_COLUMNS} FROM notifications WHERE tenant_id = $1 AND user_id = $2 \
         AND id < $3 ORDER BY id DESC LIMIT $4"
    );
    let rows = c
        .fetch_all(
            &sql,
            &args![
                tenant,
                user_id,
                before.unwrap_or(i64::MAX),
                i64::from(limit)
            ],
        )
        .await?;
    let list = rows.iter().map(notification_of).collect::<Result<_>>()?;
    Ok((list, unread(c, tenant, user_id).await?))
}

pub(super) async fn mark_read<C: Conn>(
    c: &mut C,
    tenant: &str,
    user_id: &str,
    ids: Option<&[i64]>,
) -> Result<u64> {
    match ids {
        None => {
            c.exec(
                "UPDATE notifications SET read = 1 WHERE tenant_id = $1 AND user_id = $2 AND read = 0",
                &args![tenant, user_id],
            )
            .await?;
        }
        Some(ids) => {
            for id in ids {
                c.exec(
                    "UPDATE notifications SET read = 1 WHERE tenant_id = $1 AND user_id = $2 AND id = $3",
                    &args![tenant, user_id, *id],
                )
                .await?;
            }
        }
    }
    unread(c, tenant, user_id).await
}

// -------------------------------------------------------------- e-mail ----

/// See `Store::claim_digests`.
pub(super) async fn claim_digests<C: Conn>(
    c: &mut C,
    now: i64,
    due: i64,
    lease_until: i64,
    limit: u32,
) -> Result<Vec<Digest>> {
    let due_users = c
        .fetch_all(
            "SELECT n.tenant_id, n.user_id FROM notifications n JOIN directory_users d \
             ON d.tenant_id = n.tenant_id AND d.user_id = n.user_id \
             WHERE n.mailed = 0 AND d.mail_lease < $1 \
             GROUP BY n.tenant_id, n.user_id HAVING MIN(n.at) <= $2 LIMIT $3",
            &args![now, due, i64::from(limit)],
        )
        .await?;
    let mut out = Vec::new();
    for row in due_users {
        let (tenant, user_id) = (row.text("tenant_id")?, row.text("user_id")?);
        // The claim: one node wins it, whatever the others read above.
        let d = c
            .fetch_optional(
                "UPDATE directory_users SET mail_lease = $1 \
                 WHERE tenant_id = $2 AND user_id = $3 AND mail_lease < $4 \
                 RETURNING name, avatar, email, locale, mail_ok, unsubscribed",
                &args![lease_until, &tenant, &user_id, now],
            )
            .await?;
        let Some(d) = d else { continue };
        let sql =             "SELECT n.id, n.at, n.reason, n.url_id, n.chat_id, n.comment_id, n.by_json, n.excerpt, n.read, \
             i.page_url FROM notifications n LEFT JOIN images i ON i.tenant_id = n.tenant_id AND i.url_id = n.url_id \
             WHERE n.tenant_id = $1 AND n.user_id = $2 AND n.mailed = 0 ORDER BY n.id";
        let rows = c.fetch_all(sql, &args![&tenant, &user_id]).await?;
        let email = d.opt_text("email")?;
        let mailable = email.is_some() && d.int("mail_ok")? != 0 && d.int("unsubscribed")? == 0;
        let mut notifications = Vec::new();
        let mut settles = Vec::with_capacity(rows.len());
        for r in &rows {
            settles.push(r.int("id")?);
            let n = notification_of(r)?;
            if mailable && !n.read {
                notifications.push((n, r.opt_text("page_url")?));
            }
        }
        out.push(Digest {
            tenant_id: tenant,
            user: DirectoryUser {
                user: User {
                    id: user_id,
                    name: d.text("name")?,
                    avatar: d.opt_text("avatar")?,
                    anonymous: false,
                },
                email,
                locale: d.text("locale")?,
                mail_ok: mailable,
            },
            notifications,
            settles,
        });
    }
    Ok(out)
}

pub(super) async fn finish_digest<C: Conn>(
    c: &mut C,
    d: &Digest,
    sent: bool,
    retry_at: i64,
) -> Result<()> {
    if sent {
        for id in &d.settles {
            c.exec(
                "UPDATE notifications SET mailed = 1 WHERE tenant_id = $1 AND user_id = $2 AND id = $3",
                &args![&d.tenant_id, &d.user.user.id, *id],
            )
            .await?;
        }
    }
    c.exec(
        "UPDATE directory_users SET mail_lease = $1 WHERE tenant_id = $2 AND user_id = $3",
        &args![
            if sent { 0 } else { retry_at },
            &d.tenant_id,
            &d.user.user.id
        ],
    )
    .await?;
    Ok(())
}

pub(super) async fn unsubscribe<C: Conn>(c: &mut C, tenant: &str, user_id: &str) -> Result<bool> {
    let n = c
        .exec(
            "UPDATE directory_users SET unsubscribed = 1 WHERE tenant_id = $1 AND user_id = $2",
            &args![tenant, user_id],
        )
        .await?;
    Ok(n > 0)
}

#[cfg(test)]
mod tests {
    use super::prefix_pattern;

    #[test]
    fn a_prefix_matches_itself_only_whatever_it_holds() {
        assert_eq!(prefix_pattern("Ann"), "ann%");
        assert_eq!(prefix_pattern("50%_\\x"), "50\\%\\_\\\\x%");
        assert_eq!(prefix_pattern("ÉMILE"), "émile%");
    }
}
