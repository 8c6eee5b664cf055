//! imagechat: live discussion on images.
//!
//! A site embeds one script; visitors click an image to drop a marker and
//! talk about that spot; everyone viewing the image sees every change at once.
//! This crate is the server. `docs/ARCHITECTURE.md` follows one event through
//! it; the map:
//!
//! - [`ids`]: typed ids (tenant, image, chat, seq), below everything.
//! - [`protocol`]: wire types of the public contract (serde only).
//! - [`domain`]: validation, identities, permissions and what each mutation
//!   means as events (no I/O).
//! - [`store`]: the `Store` trait and its backends; owns durability and the
//!   gap-free per-image event log.
//! - [`broker`]: the `Broker` trait that carries events between nodes.
//! - [`fanout`]: the hub (ordered, exactly-once delivery per image and
//!   subscription) and each connection's bounded outbox.
//! - [`http`]: the REST API, pages, health and metrics.
//! - [`ws`]: the WebSocket endpoint and its framing.
//! - [`usage`]: per-tenant metering, flushed to the store periodically.
//! - [`error`]: the one error type, with its HTTP status and close code.
//! - [`app`]: node state and the paths every transport shares: sessions
//!   ([`app::session`]) and writes ([`app::write`]).
//! - [`annotation`]: chats as W3C Web Annotations and IIIF, and back.
//! - [`upload`]: uploaded images: checked, stripped of metadata, kept in
//!   files or S3, swept when nothing attaches them.
//! - [`config`], [`server`]: settings, start-up and shutdown.

pub mod annotation;
pub mod app;
pub mod broker;
pub mod config;
pub mod domain;
pub mod error;
pub mod fanout;
pub mod http;
pub mod ids;
pub mod mail;
pub mod protocol;
pub mod server;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;
pub mod upload;
pub mod usage;
pub mod webhook;
pub mod ws;

pub use config::Config;
pub use server::run;
