//! Annotations, ours or another tool's, read into chats and replies.
//!
//! Accepted: an `AnnotationPage`, an `AnnotationCollection` with embedded
//! pages, one `Annotation`, or a JSON array of annotations, in W3C or IIIF
//! Presentation 3 form. A `commenting` annotation with a supported selector
//! becomes a chat; a `replying` one a comment of the chat it targets. Each
//! annotation that cannot be read is skipped with its index and the reason.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::svg;
use crate::domain::{shape, validate};
use crate::protocol::{Shape, User};

/// Most annotations one import reads.
pub const MAX_ANNOTATIONS: usize = 1000;
/// Most embedded pages of a collection followed through `next`.
const MAX_PAGES: usize = 100;
const MAX_NAME_CHARS: usize = 100;
const MAX_USER_ID_CHARS: usize = 256;

/// The image's size in pixels, for pixel coordinates (`&width=&height=`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    pub width: Option<f64>,
    pub height: Option<f64>,
}

/// One annotation read as something to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Imported {
    Chat {
        /// The annotation's own `id`, so replies can find their chat.
        id: Option<String>,
        x: f64,
        y: f64,
        shape: Option<Shape>,
        text: String,
        resolved: bool,
        creator: User,
    },
    Reply {
        id: Option<String>,
        /// The `id` of the annotation it replies to.
        target: String,
        text: String,
        creator: User,
    },
}

/// What a body holds: the annotations to write (in the body's order, but
/// replies after what they reply to; each with its index in the body) and
/// the ones skipped, with why.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    pub items: Vec<(usize, Imported)>,
    pub skipped: Vec<(usize, String)>,
}

/// Reads a body; `Err` when it is not annotations at all.
pub fn read(body: &Value, o: &Options) -> Result<Reading, String> {
    let list = annotations(body)?;
    if list.len() > MAX_ANNOTATIONS {
        return Err(format!(
            "at most {MAX_ANNOTATIONS} annotations per import ({} given)",
            list.len()
        ));
    }
    // Document order, which is the order things were written; a reply
    // that comes before what it replies to waits until the end.
    let mut items = Vec::new();
    let mut later = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut skipped = Vec::new();
    for (i, a) in list.iter().enumerate() {
        match annotation(a, o) {
            Ok(item) => {
                let (id, ready) = match &item {
                    Imported::Chat { id, .. } => (id, true),
                    Imported::Reply { id, target, .. } => (id, seen.contains(target)),
                };
                if ready {
                    if let Some(id) = id {
                        seen.insert(id.clone());
                    }
                    items.push((i, item));
                } else {
                    later.push((i, item));
                }
            }
            Err(reason) => skipped.push((i, reason)),
        }
    }
    // Replies that came before what they reply to, in as many rounds as
    // the chain is long; what never finds its target is left for the
    // writer to skip with a reason.
    loop {
        let before = later.len();
        let mut still = Vec::new();
        for (i, item) in later {
            let ready = match &item {
                Imported::Reply { target, .. } => seen.contains(target),
                Imported::Chat { .. } => true,
            };
            if ready {
                if let Imported::Reply { id: Some(id), .. } = &item {
                    seen.insert(id.clone());
                }
                items.push((i, item));
            } else {
                still.push((i, item));
            }
        }
        later = still;
        if later.is_empty() || later.len() == before {
            break;
        }
    }
    items.extend(later);
    Ok(Reading { items, skipped })
}

/// The annotations of a body, in order.
fn annotations(body: &Value) -> Result<Vec<&Value>, String> {
    const NOT: &str = "the body is not annotations: send an AnnotationPage, an \
                       AnnotationCollection with embedded pages, or a JSON array of annotations";
    match body {
        Value::Array(list) => {
            if !list.is_empty() && !list.iter().any(looks_like_annotation) {
                return Err(NOT.into());
            }
            Ok(list.iter().collect())
        }
        Value::Object(o) if has_type(o, "AnnotationPage") => items(o).ok_or_else(|| NOT.into()),
        Value::Object(o) if has_type(o, "AnnotationCollection") => {
            let mut out = Vec::new();
            let mut page = o.get("first");
            let mut pages = 0;
            while let Some(Value::Object(p)) = page {
                pages += 1;
                if pages > MAX_PAGES {
                    return Err(format!("at most {MAX_PAGES} pages per collection"));
                }
                out.extend(items(p).ok_or_else(|| NOT.to_owned())?);
                page = p.get("next");
            }
            if pages == 0 {
                return Err(
                    "the collection has no embedded pages (its `first` must be a page, not a link)"
                        .into(),
                );
            }
            Ok(out)
        }
        Value::Object(o) if has_type(o, "Annotation") => Ok(vec![body]),
        _ => Err(NOT.into()),
    }
}

fn items(page: &Map<String, Value>) -> Option<Vec<&Value>> {
    match page.get("items") {
        Some(Value::Array(list)) => Some(list.iter().collect()),
        None => Some(Vec::new()),
        Some(_) => None,
    }
}

fn looks_like_annotation(v: &Value) -> bool {
    v.as_object().is_some_and(|o| {
        has_type(o, "Annotation") || o.contains_key("motivation") || o.contains_key("target")
    })
}

/// `type` (or `@type`) names `want`, alone or in a list, with or without
/// the `oa:` prefix.
fn has_type(o: &Map<String, Value>, want: &str) -> bool {
    let named = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.strip_prefix("oa:").unwrap_or(s) == want)
    };
    ["type", "@type"].iter().any(|k| match o.get(*k) {
        Some(Value::Array(l)) => l.iter().any(named),
        Some(v) => named(v),
        None => false,
    })
}

fn unprefixed(v: &Value) -> Option<&str> {
    v.as_str().map(|s| s.strip_prefix("oa:").unwrap_or(s))
}

fn motivations(o: &Map<String, Value>) -> Vec<&str> {
    let one = unprefixed;
    match o.get("motivation") {
        Some(Value::Array(l)) => l.iter().filter_map(one).collect(),
        Some(v) => one(v).into_iter().collect(),
        None => Vec::new(),
    }
}

fn annotation(a: &Value, o: &Options) -> Result<Imported, String> {
    let Value::Object(a) = a else {
        return Err("not an annotation object".into());
    };
    if !has_type(a, "Annotation") {
        return Err("its type is not Annotation".into());
    }
    let id = a
        .get("id")
        .or_else(|| a.get("@id"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    let motives = motivations(a);
    let bodies = bodies(a);
    let creator = creator(a.get("creator"));
    if motives.contains(&"replying") {
        let target = reply_target(a.get("target"))
            .ok_or("a reply's target must name the annotation it replies to")?;
        let text = text_of(&bodies, &["replying", "commenting"])?;
        return Ok(Imported::Reply {
            id,
            target,
            text,
            creator,
        });
    }
    // Tools that write no motivation mark the comment by its body's purpose.
    let commenting = motives.contains(&"commenting")
        || (motives.is_empty() && bodies.iter().any(|b| purpose(b) == Some("commenting")));
    if !commenting {
        return Err(match motives.first() {
            Some(m) => format!("motivation {m:?} is not imported (only commenting and replying)"),
            None => "it has no commenting motivation".into(),
        });
    }
    let text = text_of(&bodies, &["commenting"])?;
    let (x, y, shape) = place(a.get("target"), o)?;
    let resolved = bodies.iter().any(|b| {
        purpose(b) == Some("tagging")
            && b.get("value")
                .and_then(Value::as_str)
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("resolved"))
    });
    Ok(Imported::Chat {
        id,
        x,
        y,
        shape,
        text,
        resolved,
        creator,
    })
}

/// The annotation's bodies as objects: `body` (one or a list) and the
/// `bodyValue` shorthand.
fn bodies(a: &Map<String, Value>) -> Vec<Map<String, Value>> {
    let mut out: Vec<Map<String, Value>> = match a.get("body") {
        Some(Value::Array(l)) => l.iter().filter_map(|b| b.as_object().cloned()).collect(),
        Some(Value::Object(b)) => vec![b.clone()],
        _ => Vec::new(),
    };
    if let Some(Value::String(s)) = a.get("bodyValue") {
        let mut b = Map::new();
        b.insert("type".into(), "TextualBody".into());
        b.insert("value".into(), s.clone().into());
        out.push(b);
    }
    out
}

fn purpose(b: &Map<String, Value>) -> Option<&str> {
    b.get("purpose")
        .and_then(Value::as_str)
        .map(|s| s.strip_prefix("oa:").unwrap_or(s))
}

/// The text of the first textual body whose purpose is one of `purposes`
/// (or that has none), HTML reduced to its text.
fn text_of(bodies: &[Map<String, Value>], purposes: &[&str]) -> Result<String, String> {
    let body = bodies
        .iter()
        .filter(|b| b.get("value").is_some_and(Value::is_string))
        .find(|b| purpose(b).is_none_or(|p| purposes.contains(&p)))
        .ok_or("it has no textual comment body")?;
    let raw = body.get("value").and_then(Value::as_str).unwrap_or("");
    let html = body
        .get("format")
        .and_then(Value::as_str)
        .is_some_and(|f| f.eq_ignore_ascii_case("text/html"));
    let text = if html { html_text(raw) } else { raw.to_owned() };
    validate::text("text", &text).map_err(|e| format!("its text is refused: {e}"))
}

/// The text of an HTML fragment, as a reader would see it: tags dropped,
/// `script` and `style` contents and comments dropped, CDATA kept, a line
/// break where a block or `<br>` ends a line, and character references
/// decoded (all of HTML's, by `html-escape`).
fn html_text(html: &str) -> String {
    const BLOCKS: &[&str] = &[
        "br",
        "p",
        "div",
        "li",
        "tr",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "pre",
        "ul",
        "ol",
        "table",
        "hr",
    ];
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(at) = rest.find('<') {
        out.push_str(&rest[..at]);
        let tag = &rest[at..];
        if let Some(body) = tag.strip_prefix("<![CDATA[") {
            let end = body.find("]]>").unwrap_or(body.len());
            // Kept as text: escape it so decoding below leaves it as it is.
            out.push_str(&html_escape::encode_text(&body[..end]));
            rest = body.get(end + 3..).unwrap_or("");
            continue;
        }
        if let Some(body) = tag.strip_prefix("<!--") {
            rest = body.find("-->").map_or("", |e| &body[e + 3..]);
            continue;
        }
        let end = tag.find('>').map_or(tag.len(), |e| e + 1);
        let name: String = tag[1..end]
            .trim_start_matches('/')
            .chars()
            .take_while(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        rest = &tag[end..];
        if (name == "script" || name == "style") && !tag.starts_with("</") {
            let close = format!("</{name}");
            let lower = rest.to_ascii_lowercase();
            rest = lower
                .find(&close)
                .and_then(|e| rest[e..].find('>').map(|g| &rest[e + g + 1..]))
                .unwrap_or("");
            continue;
        }
        if BLOCKS.contains(&name.as_str()) && !out.ends_with('\n') && !out.is_empty() {
            out.push('\n');
        }
    }
    out.push_str(rest);
    html_escape::decode_html_entities(&out).trim().to_owned()
}

/// `{"id": "import:" + its id (or a hash of its name), "name": its name or
/// "Imported"}`: a user nobody can sign in as (SSO ids never start so,
/// and the prefix is not `anon:`).
fn creator(v: Option<&Value>) -> User {
    let v = match v {
        Some(Value::Array(l)) => l.first(),
        other => other,
    };
    let (id, name) = match v {
        Some(Value::String(s)) => (Some(s.as_str()), None),
        Some(Value::Object(o)) => (
            o.get("id").or_else(|| o.get("@id")).and_then(Value::as_str),
            ["name", "nickname"]
                .iter()
                .find_map(|k| o.get(*k).and_then(Value::as_str)),
        ),
        _ => (None, None),
    };
    // The text rules of every name; a name that breaks them (or is too
    // long) is shortened or replaced, never stored as sent.
    let name = name
        .map(|n| n.trim().chars().take(MAX_NAME_CHARS).collect::<String>())
        .and_then(|n| validate::name(&n, MAX_NAME_CHARS))
        .unwrap_or_else(|| "Imported".to_owned());
    let id = match id.and_then(|i| validate::name(i, MAX_USER_ID_CHARS - 7)) {
        Some(i) => format!("import:{i}"),
        _ => {
            let key = id.unwrap_or(&name);
            let digest = Sha256::digest(key.as_bytes());
            format!("import:{}", hex::encode(&digest[..12]))
        }
    };
    User {
        id,
        name,
        avatar: None,
        anonymous: false,
    }
}

fn reply_target(t: Option<&Value>) -> Option<String> {
    let t = match t {
        Some(Value::Array(l)) => l.first(),
        other => other,
    }?;
    match t {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => ["id", "@id", "source"]
            .iter()
            .find_map(|k| match o.get(*k) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Object(s)) => s.get("id").and_then(Value::as_str).map(str::to_owned),
                _ => None,
            }),
        _ => None,
    }
}

/// Where a chat goes: its marker and shape, from the target's selector.
fn place(t: Option<&Value>, o: &Options) -> Result<(f64, f64, Option<Shape>), String> {
    let targets: Vec<&Value> = match t {
        Some(Value::Array(l)) => l.iter().collect(),
        Some(v) => vec![v],
        None => return Err("it has no target".into()),
    };
    let mut why = "its target has no selector".to_owned();
    for t in targets {
        let selectors: Vec<&Value> = match t {
            // A IIIF-style target: `source#xywh=…`.
            Value::String(s) => match s.split_once("#xywh=") {
                Some((_, frag)) => {
                    return from_xywh(&format!("xywh={frag}"), o);
                }
                None => continue,
            },
            Value::Object(obj) => match obj.get("selector") {
                Some(Value::Array(l)) => l.iter().collect(),
                Some(s) => vec![s],
                None => continue,
            },
            _ => continue,
        };
        for s in selectors {
            match selector(s, o) {
                Ok(p) => return Ok(p),
                Err(e) => why = e,
            }
        }
    }
    Err(why)
}

fn selector(s: &Value, o: &Options) -> Result<(f64, f64, Option<Shape>), String> {
    let Value::Object(s) = s else {
        return Err("a selector must be an object".into());
    };
    let value = s.get("value").and_then(Value::as_str);
    if has_type(s, "FragmentSelector") {
        return from_xywh(value.ok_or("a FragmentSelector needs a value")?, o);
    }
    if has_type(s, "SvgSelector") {
        let read =
            svg::read(value.ok_or("only an SvgSelector with its SVG as value is imported")?)?;
        let shape = if read.percent {
            read.shape
        } else {
            let (w, h) = size(o)?;
            scale(read.shape, 100.0 / w, 100.0 / h)
        };
        return shaped(shape);
    }
    if has_type(s, "PointSelector") {
        let (w, h) = size(o)?;
        let coord = |k: &str| {
            s.get(k)
                .and_then(Value::as_f64)
                .ok_or(format!("a PointSelector needs {k}"))
        };
        let (x, y) = (coord("x")? * 100.0 / w, coord("y")? * 100.0 / h);
        return pin(x, y);
    }
    Err(
        "unsupported selector: FragmentSelector (xywh), SvgSelector and PointSelector are imported"
            .into(),
    )
}

fn size(o: &Options) -> Result<(f64, f64), String> {
    match (o.width, o.height) {
        (Some(w), Some(h)) => Ok((w, h)),
        _ => {
            Err("pixel coordinates need the image's size: add &width=&height= to the import".into())
        }
    }
}

/// Media Fragments `xywh=[pixel:|percent:]x,y,w,h`; a zero-sized area is a pin.
fn from_xywh(value: &str, o: &Options) -> Result<(f64, f64, Option<Shape>), String> {
    let bad = || format!("{value:?} is not a Media Fragments xywh");
    let spec = value.trim().strip_prefix("xywh=").ok_or_else(bad)?;
    let (percent, nums) = if let Some(r) = spec.strip_prefix("percent:") {
        (true, r)
    } else {
        (false, spec.strip_prefix("pixel:").unwrap_or(spec))
    };
    let n: Vec<f64> = nums
        .split(',')
        .map(|p| {
            p.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
        })
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let [x, y, w, h] = n[..] else {
        return Err(bad());
    };
    let (sx, sy) = if percent {
        (1.0, 1.0)
    } else {
        let (iw, ih) = size(o)?;
        (100.0 / iw, 100.0 / ih)
    };
    let (x, y, w, h) = (x * sx, y * sy, w * sx, h * sy);
    if w == 0.0 && h == 0.0 {
        return pin(x, y);
    }
    shaped(Shape::Rect { x, y, w, h })
}

fn pin(x: f64, y: f64) -> Result<(f64, f64, Option<Shape>), String> {
    let x =
        validate::coordinate("x", x).map_err(|_| "the point lies outside the image".to_owned())?;
    let y =
        validate::coordinate("y", y).map_err(|_| "the point lies outside the image".to_owned())?;
    Ok((x, y, None))
}

/// A shape checked by the same rules as a client's, with its marker where
/// the widget puts it: a rect's top-left corner, the upper-left point of an
/// ellipse's outline, a polygon's first point, an arrow's tail (its head
/// stays free to point).
fn shaped(s: Shape) -> Result<(f64, f64, Option<Shape>), String> {
    let s = shape::check(&s).map_err(|e| format!("its shape is refused: {e}"))?;
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    let (x, y) = match &s {
        Shape::Rect { x, y, .. } => (*x, *y),
        Shape::Ellipse { cx, cy, rx, ry } => (
            round(cx - rx * std::f64::consts::FRAC_1_SQRT_2),
            round(cy - ry * std::f64::consts::FRAC_1_SQRT_2),
        ),
        Shape::Polygon { points } => points.first().map(|p| (p[0], p[1])).unwrap_or((0.0, 0.0)),
        Shape::Arrow { x1, y1, .. } => (*x1, *y1),
    };
    Ok((x.clamp(0.0, 100.0), y.clamp(0.0, 100.0), Some(s)))
}

fn scale(s: Shape, sx: f64, sy: f64) -> Shape {
    match s {
        Shape::Rect { x, y, w, h } => Shape::Rect {
            x: x * sx,
            y: y * sy,
            w: w * sx,
            h: h * sy,
        },
        Shape::Ellipse { cx, cy, rx, ry } => Shape::Ellipse {
            cx: cx * sx,
            cy: cy * sy,
            rx: rx * sx,
            ry: ry * sy,
        },
        Shape::Polygon { points } => Shape::Polygon {
            points: points.into_iter().map(|[x, y]| [x * sx, y * sy]).collect(),
        },
        Shape::Arrow { x1, y1, x2, y2 } => Shape::Arrow {
            x1: x1 * sx,
            y1: y1 * sy,
            x2: x2 * sx,
            y2: y2 * sy,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(a: Value, o: Options) -> Result<Imported, String> {
        let r = read(&json!([a]), &o)?;
        match (r.items.into_iter().next(), r.skipped.into_iter().next()) {
            (Some((_, i)), _) => Ok(i),
            (_, Some((_, why))) => Err(why),
            _ => Err("nothing".into()),
        }
    }

    #[test]
    fn another_tools_pixel_rect_and_svg_polygon_import() {
        let size = Options {
            width: Some(800.0),
            height: Some(600.0),
        };
        let rect = json!({
            "type": "Annotation", "motivation": "commenting",
            "body": {"type": "TextualBody", "value": "<p>Look &amp; see</p>", "format": "text/html"},
            "creator": {"id": "https://example.org/ana", "name": "Ana"},
            "target": {"source": "https://example.org/a.jpg",
                       "selector": {"type": "FragmentSelector", "value": "xywh=80,60,400,300"}}
        });
        let Imported::Chat {
            x,
            y,
            shape,
            text,
            creator,
            resolved,
            ..
        } = one(rect.clone(), size).unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (x, y, text.as_str(), resolved),
            (10.0, 10.0, "Look & see", false)
        );
        assert_eq!(
            shape,
            Some(Shape::Rect {
                x: 10.0,
                y: 10.0,
                w: 50.0,
                h: 50.0
            })
        );
        assert_eq!(
            (creator.id.as_str(), creator.name.as_str()),
            ("import:https://example.org/ana", "Ana")
        );
        assert!(one(rect, Options::default()).unwrap_err().contains("width"));
        let poly = json!({
            "type": "Annotation",
            "body": [{"type": "TextualBody", "value": "here", "purpose": "commenting"},
                     {"type": "TextualBody", "value": "Resolved", "purpose": "tagging"}],
            "target": {"selector": {"type": "SvgSelector",
                "value": "<svg><polygon points='0,0 400,0 400,300'/></svg>"}}
        });
        let Imported::Chat {
            shape,
            resolved,
            creator,
            ..
        } = one(poly, size).unwrap()
        else {
            panic!()
        };
        assert!(resolved);
        assert_eq!(creator.name, "Imported");
        assert!(creator.id.starts_with("import:") && creator.id.len() > 10);
        assert_eq!(
            shape,
            Some(Shape::Polygon {
                points: vec![[0.0, 0.0], [50.0, 0.0], [50.0, 50.0]]
            })
        );
    }

    #[test]
    fn html_bodies_read_as_their_text() {
        for (html, text) in [
            ("A&#65;&#x42;C", "AABC"),
            ("caf&eacute; &copy;", "café ©"),
            ("line1<br>line2<p>para</p>", "line1\nline2\npara"),
            ("<style>p{}</style><b>x</b>", "x"),
            ("<SCRIPT>alert(1)</script >ok", "ok"),
            ("<![CDATA[a < b]]> &amp; c", "a < b & c"),
            ("a<!-- hidden -->b", "ab"),
            ("<p>unclosed", "unclosed"),
        ] {
            assert_eq!(html_text(html), text, "{html}");
        }
    }

    #[test]
    fn reply_chains_that_come_before_their_chat_all_land() {
        let body = json!([
            {"id": "r3", "type": "Annotation", "motivation": "replying", "bodyValue": "3", "target": "r2"},
            {"id": "r2", "type": "Annotation", "motivation": "replying", "bodyValue": "2", "target": "r1"},
            {"id": "r1", "type": "Annotation", "motivation": "replying", "bodyValue": "1", "target": "c1"},
            {"id": "c1", "type": "Annotation", "motivation": "commenting", "bodyValue": "c",
             "target": {"selector": {"type": "FragmentSelector", "value": "xywh=percent:5,5,0,0"}}},
        ]);
        let r = read(&body, &Options::default()).unwrap();
        let order: Vec<usize> = r.items.iter().map(|(i, _)| *i).collect();
        assert_eq!(order, vec![3, 2, 1, 0]);
    }

    #[test]
    fn containers_and_what_is_not_annotations() {
        let a = json!({"type": "Annotation", "motivation": "commenting", "bodyValue": "hi",
            "target": "https://x.example/c#xywh=percent:1,2,0,0"});
        let page = json!({"type": "AnnotationPage", "items": [a.clone()]});
        let coll = json!({"type": "AnnotationCollection", "first": {"type": "AnnotationPage",
            "items": [a.clone()], "next": page.clone()}});
        assert_eq!(read(&page, &Options::default()).unwrap().items.len(), 1);
        assert_eq!(read(&coll, &Options::default()).unwrap().items.len(), 2);
        assert_eq!(read(&a, &Options::default()).unwrap().items.len(), 1);
        for not in [
            json!({"hello": 1}),
            json!([1, 2]),
            json!("x"),
            json!({"type": "AnnotationCollection", "first": "https://x/p1"}),
        ] {
            assert!(read(&not, &Options::default()).is_err(), "{not}");
        }
        let many = Value::Array(vec![a; MAX_ANNOTATIONS + 1]);
        assert!(read(&many, &Options::default()).is_err());
    }

    #[test]
    fn replies_come_after_what_they_reply_to_and_bad_ones_are_skipped_with_reasons() {
        let body = json!([
            {"type": "Annotation", "motivation": "replying", "bodyValue": "re", "target": "urn:a"},
            {"id": "urn:a", "type": "Annotation", "motivation": "commenting", "bodyValue": "first",
             "target": {"selector": {"type": "FragmentSelector", "value": "xywh=percent:5,5,0,0"}}},
            {"type": "Annotation", "motivation": "tagging", "bodyValue": "t"},
            {"type": "Annotation", "motivation": "commenting", "bodyValue": "   ",
             "target": {"selector": {"type": "FragmentSelector", "value": "xywh=percent:5,5,0,0"}}},
            {"type": "Annotation", "motivation": "commenting", "bodyValue": "far",
             "target": {"selector": {"type": "FragmentSelector", "value": "xywh=percent:95,5,10,10"}}},
        ]);
        let r = read(&body, &Options::default()).unwrap();
        let order: Vec<usize> = r.items.iter().map(|(i, _)| *i).collect();
        assert_eq!(order, vec![1, 0]);
        let skipped: Vec<usize> = r.skipped.iter().map(|(i, _)| *i).collect();
        assert_eq!(skipped, vec![2, 3, 4]);
        assert!(r.skipped.iter().all(|(_, why)| !why.is_empty()));
    }
}
