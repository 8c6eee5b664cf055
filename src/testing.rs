//! What the unit tests of several modules build alike: a tenant, a user's
//! authority, a new chat.

use crate::domain::chat::Authority;
use crate::domain::{Actor, AnonymousPolicy, Mutation, Tenant};
use crate::protocol::User;
use crate::store::Store;

/// Creates tenant `id` (anonymous users may write) in `store`.
pub async fn tenant(store: &dyn Store, id: &str) {
    store
        .create_tenant(&Tenant {
            id: id.into(),
            secret: "s".into(),
            origins: Vec::new(),
            anonymous: AnonymousPolicy::Write,
        })
        .await
        .expect("the tenant is created");
}

/// A signed-in user `id` of tenant `t`.
pub fn user(t: &str, id: &str) -> Authority {
    Authority::User(Actor {
        tenant_id: t.into(),
        user: User {
            id: id.into(),
            name: id.into(),
            avatar: None,
            anonymous: false,
        },
        moderator: false,
        expires_at: i64::MAX,
    })
}

/// A new chat at the image's centre with one comment.
pub fn create(url_id: &str, attachments: Vec<String>) -> Mutation {
    Mutation::CreateChat {
        url_id: url_id.into(),
        x: 0.5,
        y: 0.5,
        text: "hello".into(),
        shape: None,
        resolved: false,
        image_url: None,
        page_url: None,
        attachments,
        mentions: vec![],
    }
}
