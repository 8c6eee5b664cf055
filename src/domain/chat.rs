//! What each mutation means: `plan` turns a request and the chat's current
//! state into the events to log (or a refusal), `fold` applies one change to a
//! chat. Storage runs `plan` inside its write transaction, so the check and the
//! write see the same state.

use super::{short_id, Actor, DomainError};
use crate::ids::{ChatId, Seq};
use crate::protocol::{
    Attachment, Change, Chat, Comment, EventKind, NotificationReason, Shape, User,
};

/// Characters in a chat id.
const ID_CHARS: usize = 10;

/// A validated request to change an image's chats.
#[derive(Debug, Clone, PartialEq)]
pub enum Mutation {
    CreateChat {
        url_id: String,
        x: f64,
        y: f64,
        text: String,
        /// Checked by [`super::shape::parse`].
        shape: Option<Shape>,
        /// True only for imported annotations tagged "resolved".
        resolved: bool,
        /// Where the image and its page were seen (checked http(s) URLs);
        /// the image keeps the latest of each.
        image_url: Option<String>,
        page_url: Option<String>,
        /// Upload ids for the first comment (checked by the store, which
        /// resolves them with [`Mutation::attachment_ids`]).
        attachments: Vec<String>,
        /// User ids the first comment mentions (resolved by the store with
        /// [`Mutation::mention_ids`]).
        mentions: Vec<String>,
    },
    UpdateChat {
        chat_id: ChatId,
        position: Option<(f64, f64)>,
        /// `Some(None)` makes the chat a pin again.
        shape: Option<Option<Shape>>,
        resolved: Option<bool>,
    },
    DeleteChat {
        chat_id: ChatId,
    },
    AddComment {
        chat_id: ChatId,
        text: String,
        attachments: Vec<String>,
        mentions: Vec<String>,
    },
    EditComment {
        chat_id: ChatId,
        comment_id: String,
        text: String,
        /// `None` keeps the comment's attachments; `Some(vec![])` removes them.
        attachments: Option<Vec<String>>,
        /// `None` keeps the comment's mentions.
        mentions: Option<Vec<String>>,
    },
    DeleteComment {
        chat_id: ChatId,
        comment_id: String,
    },
}

impl Mutation {
    /// The existing chat this mutation needs, if any.
    pub fn chat_id(&self) -> Option<&str> {
        match self {
            Mutation::CreateChat { .. } => None,
            Mutation::UpdateChat { chat_id, .. }
            | Mutation::DeleteChat { chat_id }
            | Mutation::AddComment { chat_id, .. }
            | Mutation::EditComment { chat_id, .. }
            | Mutation::DeleteComment { chat_id, .. } => Some(chat_id),
        }
    }

    /// The upload ids this mutation attaches, when it sets a comment's
    /// attachments (`None`: it sets none, or an edit keeps them).
    pub fn attachment_ids(&self) -> Option<&[String]> {
        match self {
            Mutation::CreateChat { attachments, .. } | Mutation::AddComment { attachments, .. } => {
                Some(attachments)
            }
            Mutation::EditComment { attachments, .. } => attachments.as_deref(),
            _ => None,
        }
    }

    /// The user ids this mutation mentions, when it sets a comment's
    /// mentions (`None`: it sets none, or an edit keeps them).
    pub fn mention_ids(&self) -> Option<&[String]> {
        match self {
            Mutation::CreateChat { mentions, .. } | Mutation::AddComment { mentions, .. } => {
                Some(mentions)
            }
            Mutation::EditComment { mentions, .. } => mentions.as_deref(),
            _ => None,
        }
    }
}

/// What the store resolved of a mutation's ids, for [`plan`]: the uploads
/// [`Mutation::attachment_ids`] names and the users
/// [`Mutation::mention_ids`] names, in order (`None` when it names none).
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub attachments: Option<Vec<Attachment>>,
    pub mentions: Option<Vec<User>>,
}

/// Who a new or edited comment notifies, and why (contract §13): the users
/// it mentions (reason `mention`; for an edit, only those it did not
/// mention before), then, for a new comment, the chat's followers (reason
/// `reply`); never its author, and each user once, a mention first.
pub fn recipients(
    comment: &Comment,
    mentioned_before: &[User],
    followers: &[String],
    new_comment: bool,
) -> Vec<(String, NotificationReason)> {
    let mut out: Vec<(String, NotificationReason)> = Vec::new();
    let mut add = |id: &str, why| {
        if id != comment.user.id && !out.iter().any(|(u, _)| u == id) {
            out.push((id.to_owned(), why));
        }
    };
    for u in &comment.mentions {
        if !mentioned_before.iter().any(|b| b.id == u.id) {
            add(&u.id, NotificationReason::Mention);
        }
    }
    if new_comment {
        for f in followers {
            add(f, NotificationReason::Reply);
        }
    }
    out
}

/// A comment's excerpt in a notification: its first 140 characters.
pub fn excerpt(text: &str) -> String {
    text.chars().take(140).collect()
}

/// Who asks: a signed-in user, or the tenant itself through its own API
/// (moderation, or an import writing in the name of an annotation's creator).
#[derive(Debug, Clone)]
pub enum Authority {
    User(Actor),
    Tenant,
    /// The tenant importing annotations: new chats and comments are
    /// authored by this (import-only) user.
    Import(User),
}

impl Authority {
    fn may_modify(&self, author_id: &str) -> Result<(), DomainError> {
        let ok = match self {
            Authority::Tenant | Authority::Import(_) => true,
            Authority::User(a) => a.owns_or_moderates(author_id),
        };
        ok.then_some(()).ok_or(DomainError::Forbidden(
            "only its author or a moderator may do that",
        ))
    }

    fn user(&self) -> Result<&User, DomainError> {
        match self {
            Authority::User(a) => Ok(&a.user),
            Authority::Import(u) => Ok(u),
            Authority::Tenant => Err(DomainError::Forbidden("this call needs a user")),
        }
    }
}

/// The events a mutation logs, given the chat it targets as stored now
/// (`None` when it does not exist) and the seq the first event will take.
/// An empty list means "changes nothing". `resolved` holds the uploads
/// and users the mutation names, resolved by the caller.
///
/// A comment's id is the seq of the event that created it, in decimal: unique
/// within its image (so within its chat, which is all the API needs), and
/// short, which keeps every event that carries it small.
pub fn plan(
    m: &Mutation,
    current: Option<&Chat>,
    by: &Authority,
    now: i64,
    next_seq: Seq,
    resolved: Resolved,
) -> Result<Vec<EventKind>, DomainError> {
    let Resolved {
        attachments,
        mentions,
    } = resolved;
    if let Mutation::CreateChat {
        x,
        y,
        text,
        shape,
        resolved,
        ..
    } = m
    {
        let user = by.user()?.clone();
        let comment = Comment {
            id: next_seq.to_string(),
            user: user.clone(),
            text: text.clone(),
            created_at: now,
            edited_at: None,
            attachments: attachments.unwrap_or_default(),
            mentions: mentions.unwrap_or_default(),
        };
        let chat = Chat {
            id: short_id(ID_CHARS).into(),
            x: *x,
            y: *y,
            resolved: *resolved,
            shape: shape.clone(),
            user,
            created_at: now,
            updated_at: None,
            comments: vec![comment],
        };
        return Ok(vec![EventKind::NewImageChat { chat }]);
    }
    let chat = current.ok_or(DomainError::NotFound)?;
    let updated = |change| EventKind::ImageChatUpdated {
        chat_id: chat.id.clone(),
        change,
    };
    let find = |comment_id: &str| {
        chat.comments
            .iter()
            .find(|c| c.id == comment_id)
            .ok_or(DomainError::NotFound)
    };
    Ok(match m {
        Mutation::CreateChat { .. } => unreachable!("handled above"),
        Mutation::UpdateChat {
            position,
            shape,
            resolved,
            ..
        } => {
            // One event per changed aspect, in the contract's order:
            // moved, reshaped, resolved.
            let mut out = Vec::new();
            if let Some((x, y)) = *position {
                by.may_modify(&chat.user.id)?;
                if (x, y) != (chat.x, chat.y) {
                    out.push(updated(Change::Moved { x, y }));
                }
            }
            if let Some(shape) = shape {
                by.may_modify(&chat.user.id)?;
                if *shape != chat.shape {
                    out.push(updated(Change::Reshaped {
                        shape: shape.clone(),
                    }));
                }
            }
            if let Some(r) = *resolved {
                if r != chat.resolved {
                    out.push(updated(Change::Resolved { resolved: r }));
                }
            }
            out
        }
        Mutation::DeleteChat { .. } => {
            by.may_modify(&chat.user.id)?;
            vec![EventKind::DeletedImageChat {
                chat_id: chat.id.clone(),
            }]
        }
        Mutation::AddComment { text, .. } => {
            let user = by.user()?.clone();
            vec![updated(Change::CommentAdded {
                comment: Comment {
                    id: next_seq.to_string(),
                    user,
                    text: text.clone(),
                    created_at: now,
                    edited_at: None,
                    attachments: attachments.unwrap_or_default(),
                    mentions: mentions.unwrap_or_default(),
                },
            })]
        }
        Mutation::EditComment {
            comment_id, text, ..
        } => {
            let c = find(comment_id)?;
            by.may_modify(&c.user.id)?;
            let mut edited = c.clone();
            edited.text = text.clone();
            edited.edited_at = Some(now);
            if let Some(a) = attachments {
                edited.attachments = a;
            }
            if let Some(m) = mentions {
                edited.mentions = m;
            }
            vec![updated(Change::CommentEdited { comment: edited })]
        }
        Mutation::DeleteComment { comment_id, .. } => {
            let c = find(comment_id)?;
            by.may_modify(&c.user.id)?;
            if chat.comments.len() == 1 {
                // A chat without comments would be an empty marker: it goes too.
                vec![EventKind::DeletedImageChat {
                    chat_id: chat.id.clone(),
                }]
            } else {
                vec![updated(Change::CommentDeleted {
                    comment_id: c.id.clone(),
                })]
            }
        }
    })
}

/// Applies one change, made at `at`, to a chat.
pub fn fold(chat: &mut Chat, change: &Change, at: i64) {
    match change {
        Change::CommentAdded { comment } => chat.comments.push(comment.clone()),
        Change::CommentEdited { comment } => {
            if let Some(c) = chat.comments.iter_mut().find(|c| c.id == comment.id) {
                *c = comment.clone();
            }
        }
        Change::CommentDeleted { comment_id } => chat.comments.retain(|c| &c.id != comment_id),
        Change::Moved { x, y } => (chat.x, chat.y) = (*x, *y),
        Change::Resolved { resolved } => chat.resolved = *resolved,
        Change::Reshaped { shape } => chat.shape = shape.clone(),
    }
    chat.updated_at = Some(at);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::auth::anonymous_user;
    use crate::protocol::Shape;

    fn actor(moderator: bool) -> Authority {
        Authority::User(Actor {
            tenant_id: "t".into(),
            user: anonymous_user(),
            moderator,
            expires_at: i64::MAX,
        })
    }

    fn created(by: &Authority) -> Chat {
        let m = Mutation::CreateChat {
            url_id: "u".into(),
            x: 1.0,
            y: 2.0,
            text: "hi".into(),
            shape: None,
            resolved: false,
            image_url: None,
            page_url: None,
            attachments: vec![],
            mentions: vec![],
        };
        match plan(&m, None, by, 10, Seq(1), Resolved::default())
            .unwrap()
            .remove(0)
        {
            EventKind::NewImageChat { chat } => chat,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn only_the_author_or_a_moderator_moves_and_deletes() {
        let (author, other, moderator) = (actor(false), actor(false), actor(true));
        let chat = created(&author);
        let mv = Mutation::UpdateChat {
            chat_id: chat.id.clone(),
            position: Some((5.0, 5.0)),
            shape: None,
            resolved: None,
        };
        assert!(matches!(
            plan(&mv, Some(&chat), &other, 11, Seq(2), Resolved::default()),
            Err(DomainError::Forbidden(_))
        ));
        assert_eq!(
            plan(
                &mv,
                Some(&chat),
                &moderator,
                11,
                Seq(2),
                Resolved::default()
            )
            .unwrap()
            .len(),
            1
        );
        assert_eq!(
            plan(
                &mv,
                Some(&chat),
                &Authority::Tenant,
                11,
                Seq(2),
                Resolved::default()
            )
            .unwrap()
            .len(),
            1
        );
        let resolve = Mutation::UpdateChat {
            chat_id: chat.id.clone(),
            position: None,
            shape: None,
            resolved: Some(true),
        };
        assert_eq!(
            plan(
                &resolve,
                Some(&chat),
                &other,
                11,
                Seq(2),
                Resolved::default()
            )
            .unwrap()
            .len(),
            1
        );
        assert_eq!(
            plan(&mv, None, &author, 11, Seq(2), Resolved::default()),
            Err(DomainError::NotFound)
        );
    }

    #[test]
    fn a_no_op_update_plans_nothing_and_deleting_the_last_comment_deletes_the_chat() {
        let author = actor(false);
        let mut chat = created(&author);
        let same = Mutation::UpdateChat {
            chat_id: chat.id.clone(),
            position: Some((1.0, 2.0)),
            shape: Some(None),
            resolved: Some(false),
        };
        assert!(
            plan(&same, Some(&chat), &author, 11, Seq(2), Resolved::default())
                .unwrap()
                .is_empty()
        );
        let del = Mutation::DeleteComment {
            chat_id: chat.id.clone(),
            comment_id: chat.comments[0].id.clone(),
        };
        assert!(matches!(
            plan(&del, Some(&chat), &author, 11, Seq(2), Resolved::default()).unwrap()[0],
            EventKind::DeletedImageChat { .. }
        ));
        let add = Mutation::AddComment {
            chat_id: chat.id.clone(),
            text: "more".into(),
            attachments: vec![],
            mentions: vec![],
        };
        let ev = plan(&add, Some(&chat), &author, 12, Seq(2), Resolved::default())
            .unwrap()
            .remove(0);
        let EventKind::ImageChatUpdated { change, .. } = ev else {
            panic!()
        };
        fold(&mut chat, &change, 12);
        assert_eq!((chat.comments.len(), chat.updated_at), (2, Some(12)));
        assert!(matches!(
            plan(&del, Some(&chat), &author, 13, Seq(2), Resolved::default()).unwrap()[0],
            EventKind::ImageChatUpdated { .. }
        ));
    }

    #[test]
    fn a_patch_logs_moved_reshaped_resolved_in_that_order_and_only_what_changed() {
        let (author, other) = (actor(false), actor(false));
        let chat = created(&author);
        let rect = Shape::Rect {
            x: 1.0,
            y: 2.0,
            w: 3.0,
            h: 4.0,
        };
        let all = Mutation::UpdateChat {
            chat_id: chat.id.clone(),
            position: Some((9.0, 9.0)),
            shape: Some(Some(rect.clone())),
            resolved: Some(true),
        };
        let ops: Vec<_> = plan(&all, Some(&chat), &author, 11, Seq(2), Resolved::default())
            .unwrap()
            .into_iter()
            .map(|e| match e {
                EventKind::ImageChatUpdated { change, .. } => change,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            ops,
            vec![
                Change::Moved { x: 9.0, y: 9.0 },
                Change::Reshaped {
                    shape: Some(rect.clone())
                },
                Change::Resolved { resolved: true },
            ]
        );
        // Reshaping needs what moving needs.
        let reshape = Mutation::UpdateChat {
            chat_id: chat.id.clone(),
            position: None,
            shape: Some(Some(rect.clone())),
            resolved: None,
        };
        assert!(matches!(
            plan(
                &reshape,
                Some(&chat),
                &other,
                11,
                Seq(2),
                Resolved::default()
            ),
            Err(DomainError::Forbidden(_))
        ));
        let mut shaped = chat.clone();
        fold(&mut shaped, &ops[1], 11);
        assert_eq!(shaped.shape, Some(rect));
        assert!(plan(
            &reshape,
            Some(&shaped),
            &author,
            12,
            Seq(3),
            Resolved::default()
        )
        .unwrap()
        .is_empty());
        let unshape = Mutation::UpdateChat {
            chat_id: chat.id.clone(),
            position: None,
            shape: Some(None),
            resolved: None,
        };
        assert_eq!(
            plan(
                &unshape,
                Some(&shaped),
                &author,
                12,
                Seq(3),
                Resolved::default()
            )
            .unwrap(),
            vec![EventKind::ImageChatUpdated {
                chat_id: chat.id.clone(),
                change: Change::Reshaped { shape: None }
            }]
        );
    }
}
