//! Standard annotations out and in (contract §11): chats and comments as W3C
//! Web Annotations (<https://www.w3.org/TR/annotation-model/>) or IIIF
//! Presentation 3 annotations (<https://iiif.io/api/presentation/3.0/>), and
//! such annotations, from us or another tool, read back into chats.
//!
//! Pure data in, data out: no I/O. [`export`] builds the JSON-LD; [`import`]
//! reads it into a list of chats and replies for the one write path.

pub mod export;
pub mod import;
pub mod svg;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

pub use export::{Exporter, Format};
pub use import::{read, Imported, Options, Reading};

/// The W3C Web Annotation JSON-LD context.
pub const W3C_CONTEXT: &str = "http://www.w3.org/ns/anno.jsonld";
/// The IIIF Presentation 3 JSON-LD context.
pub const IIIF_CONTEXT: &str = "http://iiif.io/api/presentation/3/context.json";
/// What a `FragmentSelector`'s value conforms to.
pub const MEDIA_FRAGMENTS: &str = "http://www.w3.org/TR/media-frags/";

/// Everything outside RFC 3986's unreserved characters
/// (`ALPHA / DIGIT / "-" / "." / "_" / "~"`) is percent-encoded.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes every byte outside RFC 3986's unreserved characters.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}
