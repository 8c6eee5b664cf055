//! Notification e-mail (contract §13): at most one digest per user per
//! `--email-digest-seconds`, sent that long after the first notification
//! not yet mailed, listing the notifications still unread and never
//! mailed, with a plain-text and an HTML part in the user's locale (`en`,
//! `ja`), and one-click unsubscribing (RFC 8058: `List-Unsubscribe` and
//! `List-Unsubscribe-Post`). Sent over SMTP with lettre.
//!
//! Which node mails whom is the store's: a user's digest is claimed
//! (leased) by one node at a time (`Store::claim_digests`).

use std::sync::Arc;
use std::time::Duration;

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::app::App;
use crate::domain::now_ms;
use crate::protocol::{Notification, NotificationReason};
use crate::store::Digest;

/// How long a node holds a digest it is sending.
const LEASE_MS: i64 = 60_000;
/// How long a digest that could not be sent waits to be tried again.
const RETRY_MS: i64 = 60_000;
/// Users mailed per round at most.
const BATCH: u32 = 50;

/// The SMTP side: a transport, the sender, and where links point.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The server's public origin (`--public-url`), for unsubscribe links.
    public_url: String,
}

impl Mailer {
    /// From `--smtp-url` (lettre's URL forms: `smtps://host:port`,
    /// `smtp://host:port?tls=required`, plain `smtp://host:port`, each with
    /// optional `user:password@`), `--mail-from` and `--public-url`.
    /// `None` without `--smtp-url`.
    ///
    /// Errors: a URL or address that does not parse, or no `--public-url`.
    pub fn from_config(c: &crate::Config) -> anyhow::Result<Option<Mailer>> {
        let (Some(url), Some(from)) = (&c.smtp_url, &c.mail_from) else {
            return Ok(None);
        };
        let Some(public_url) = &c.public_url else {
            anyhow::bail!("--smtp-url needs --public-url: e-mail links point there");
        };
        // lettre's TLS needs a process-wide crypto provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("--smtp-url: {e}"))?
            .timeout(Some(Duration::from_secs(30)))
            .build();
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("--mail-from: {e}"))?;
        Ok(Some(Mailer {
            transport,
            from,
            public_url: public_url.clone(),
        }))
    }
}

/// The words of a digest in one locale.
struct Words {
    subject: fn(usize) -> String,
    intro: &'static str,
    mention: &'static str,
    reply: &'static str,
    open: &'static str,
    unsubscribe: &'static str,
}

const EN: Words = Words {
    subject: |n| {
        if n == 1 {
            "1 new notification".to_owned()
        } else {
            format!("{n} new notifications")
        }
    },
    intro: "Here is what happened in discussions you take part in:",
    mention: "mentioned you",
    reply: "replied",
    open: "Open the discussion",
    unsubscribe: "Unsubscribe from these e-mails",
};

const JA: Words = Words {
    subject: |n| format!("新しい通知が{n}件あります"),
    intro: "参加しているディスカッションの新着です:",
    mention: "さんがあなたをメンションしました",
    reply: "さんが返信しました",
    open: "ディスカッションを開く",
    unsubscribe: "このメールの配信を停止する",
};

fn words(locale: &str) -> &'static Words {
    if locale == "ja" {
        &JA
    } else {
        &EN
    }
}

/// One notification's line: who did what (`{name} mentioned you`).
fn line(w: &Words, n: &Notification, locale: &str) -> String {
    let what = match n.reason {
        NotificationReason::Mention => w.mention,
        NotificationReason::Reply => w.reply,
    };
    if locale == "ja" {
        format!("{}{}", n.by.name, what)
    } else {
        format!("{} {}", n.by.name, what)
    }
}

/// The link back to a notification's thread: its image's page (contract
/// §10 `pageUrl`) with the chat in the fragment; `None` when the page is
/// not known.
pub fn thread_link(page_url: Option<&str>, n: &Notification) -> Option<String> {
    page_url.map(|p| format!("{p}#imagechat-{}", n.chat_id))
}

/// The plain-text and HTML parts of a digest and its subject.
pub fn compose(d: &Digest, unsubscribe: &str) -> (String, String, String) {
    let locale = d.user.locale.as_str();
    let w = words(locale);
    let subject = (w.subject)(d.notifications.len());
    let mut text = format!("{}\n\n", w.intro);
    let mut html = format!(
        "<!doctype html><html lang=\"{locale}\"><body style=\"font-family:sans-serif\"><p>{}</p><ul>",
        html_escape::encode_text(w.intro)
    );
    for (n, page) in &d.notifications {
        let who = line(w, n, locale);
        let link = thread_link(page.as_deref(), n);
        text.push_str(&format!("* {who}: \"{}\"\n", n.excerpt));
        html.push_str(&format!(
            "<li><p><strong>{}</strong>: &ldquo;{}&rdquo;</p>",
            html_escape::encode_text(&who),
            html_escape::encode_text(&n.excerpt)
        ));
        if let Some(link) = link {
            text.push_str(&format!("  {}: {link}\n", w.open));
            html.push_str(&format!(
                "<p><a href=\"{}\">{}</a></p>",
                html_escape::encode_double_quoted_attribute(&link),
                html_escape::encode_text(w.open)
            ));
        }
        html.push_str("</li>");
        text.push('\n');
    }
    text.push_str(&format!("--\n{}: {unsubscribe}\n", w.unsubscribe));
    html.push_str(&format!(
        "</ul><hr><p><a href=\"{}\">{}</a></p></body></html>",
        html_escape::encode_double_quoted_attribute(unsubscribe),
        html_escape::encode_text(w.unsubscribe)
    ));
    (subject, text, html)
}

/// The digest as a message to its user.
///
/// Errors: the user's address does not parse, or the message cannot be
/// built.
pub fn message(m: &Mailer, d: &Digest, unsubscribe: &str) -> anyhow::Result<Message> {
    let to: Mailbox = d
        .user
        .email
        .as_deref()
        .unwrap_or_default()
        .parse()
        .map_err(|e| anyhow::anyhow!("the address does not parse: {e}"))?;
    let (subject, text, html) = compose(d, unsubscribe);
    Ok(Message::builder()
        .from(m.from.clone())
        .to(to)
        .subject(subject)
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            format!("<{unsubscribe}>"),
        ))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click".to_owned(),
        ))
        .multipart(MultiPart::alternative_plain_html(text, html))?)
}

/// Mails due digests, forever, about every tenth of the digest period
/// (between 100 ms and 5 s).
pub async fn run(app: Arc<App>, mailer: Mailer) {
    let period_ms =
        i64::try_from(app.config.email_digest_seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
    let tick = Duration::from_millis(
        u64::try_from(period_ms / 10)
            .unwrap_or(5000)
            .clamp(100, 5000),
    );
    loop {
        tokio::time::sleep(tick).await;
        let now = now_ms();
        let due = match app
            .store
            .claim_digests(now, now.saturating_sub(period_ms), now + LEASE_MS, BATCH)
            .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the notifications to mail");
                continue;
            }
        };
        for d in due {
            let sent = if d.notifications.is_empty() {
                // Nothing to mail (all read, or no address): settled.
                true
            } else {
                send(&app, &mailer, &d).await
            };
            if let Err(e) = app.store.finish_digest(&d, sent, now + RETRY_MS).await {
                tracing::warn!(error = %e, "could not record a digest");
            }
        }
    }
}

/// Whether a page may be linked from an e-mail of `tenant`: its origin is
/// one the tenant allows (any, when the tenant lists none). The page URL
/// is whatever a writer last sent, so a tenant that lists its origins
/// never has mail link elsewhere.
fn linkable(tenant: &crate::domain::Tenant, page: &str) -> bool {
    let Ok(u) = url::Url::parse(page) else {
        return false;
    };
    tenant.origins.is_empty()
        || tenant
            .origins
            .iter()
            .any(|o| *o == u.origin().ascii_serialization())
}

async fn send(app: &App, mailer: &Mailer, d: &Digest) -> bool {
    let tenant = match app.tenant(&d.tenant_id).await {
        Ok(Some(t)) => t,
        _ => return false,
    };
    let mut d = d.clone();
    for (_, page) in &mut d.notifications {
        if page.as_deref().is_some_and(|p| !linkable(&tenant, p)) {
            *page = None;
        }
    }
    let d = &d;
    let token = crate::http::notify::unsubscribe_token(app, &d.tenant_id, &d.user.user.id);
    let unsubscribe = format!(
        "{}/api/v1/unsubscribe?token={}",
        mailer.public_url,
        url::form_urlencoded::byte_serialize(token.as_bytes()).collect::<String>()
    );
    let result = match message(mailer, d, &unsubscribe) {
        Ok(msg) => mailer
            .transport
            .send(msg)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match result {
        Ok(()) => {
            app.metrics.email("sent");
            true
        }
        Err(e) => {
            app.metrics.email("failed");
            tracing::warn!(error = %e, tenant = %d.tenant_id, "a notification e-mail failed; retrying later");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::User;
    use crate::store::DirectoryUser;

    fn digest(locale: &str) -> Digest {
        let n = Notification {
            id: "1".into(),
            at: 0,
            reason: NotificationReason::Mention,
            url_id: "img".into(),
            chat_id: "c1".into(),
            comment_id: "2".into(),
            by: User {
                id: "b".into(),
                name: "Bo <script>".into(),
                avatar: None,
                anonymous: false,
            },
            excerpt: "look & see".into(),
            read: false,
        };
        Digest {
            tenant_id: "t".into(),
            user: DirectoryUser {
                user: User {
                    id: "a".into(),
                    name: "Ann".into(),
                    avatar: None,
                    anonymous: false,
                },
                email: Some("ann@example.com".into()),
                locale: locale.into(),
                mail_ok: true,
            },
            notifications: vec![(n, Some("https://site.example/p".into()))],
            settles: vec![1],
        }
    }

    #[test]
    fn mail_links_only_to_the_tenants_origins() {
        let mut t = crate::domain::Tenant {
            id: "t".into(),
            secret: "s".into(),
            origins: vec![],
            anonymous: crate::domain::AnonymousPolicy::Write,
        };
        assert!(linkable(&t, "https://anywhere.example/p"));
        t.origins = vec!["https://site.example".into()];
        assert!(linkable(&t, "https://site.example/p?q=1"));
        assert!(!linkable(&t, "https://evil.example/site.example"));
        assert!(!linkable(&t, "https://site.example.evil.example/"));
        assert!(!linkable(&t, "http://site.example/p"));
        assert!(!linkable(&t, "not a url"));
    }

    #[test]
    fn a_digest_is_localized_escaped_and_links_back() {
        let (subject, text, html) = compose(&digest("en"), "https://chat.example/u?token=x");
        assert_eq!(subject, "1 new notification");
        assert!(
            text.contains("Bo <script> mentioned you: \"look & see\""),
            "{text}"
        );
        assert!(
            text.contains("https://site.example/p#imagechat-c1"),
            "{text}"
        );
        assert!(
            html.contains("Bo &lt;script&gt;") && !html.contains("<script>"),
            "{html}"
        );
        assert!(html.contains("look &amp; see"), "{html}");
        let (subject, text, _) = compose(&digest("ja"), "https://chat.example/u?token=x");
        assert_eq!(subject, "新しい通知が1件あります");
        assert!(
            text.contains("Bo <script>さんがあなたをメンションしました"),
            "{text}"
        );
    }
}
