//! Shapes as the SVG of an `SvgSelector`, and back.
//!
//! Written: one element in a `viewBox="0 0 100 100"` document, so its units
//! are percent of the image. Read (with `roxmltree`): exactly one `rect`,
//! `ellipse`, `circle`, `polygon`, `polyline` or `line`; a `viewBox` of
//! `0 0 100 100` means percent, anything else means pixels of the image.

use crate::protocol::Shape;

const XMLNS: &str = "http://www.w3.org/2000/svg";

/// The SVG document of a shape, in percent units.
pub fn write(shape: &Shape) -> String {
    let element = match shape {
        Shape::Rect { x, y, w, h } => {
            format!(r#"<rect x="{x}" y="{y}" width="{w}" height="{h}"/>"#)
        }
        Shape::Ellipse { cx, cy, rx, ry } => {
            format!(r#"<ellipse cx="{cx}" cy="{cy}" rx="{rx}" ry="{ry}"/>"#)
        }
        Shape::Polygon { points } => {
            let pts: Vec<String> = points.iter().map(|[x, y]| format!("{x},{y}")).collect();
            format!(r#"<polygon points="{}"/>"#, pts.join(" "))
        }
        Shape::Arrow { x1, y1, x2, y2 } => {
            format!(r#"<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}"/>"#)
        }
    };
    format!(r#"<svg xmlns="{XMLNS}" viewBox="0 0 100 100">{element}</svg>"#)
}

/// A shape read from SVG, in the document's own units, and whether those
/// are percent (`viewBox="0 0 100 100"`) or pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub shape: Shape,
    pub percent: bool,
}

/// Longest SVG document read, in bytes.
pub const MAX_SVG_BYTES: usize = 64 * 1024;
/// Deepest element nesting read. The XML parser recurses per level, so an
/// unbounded depth (thousands of nested `<g>`) would overflow the stack and
/// abort the whole process: the depth is measured first, without recursion.
pub const MAX_SVG_DEPTH: usize = 32;

/// The deepest element nesting of an XML text, measured by a flat scan
/// (comments, processing instructions and declarations skipped; quoted
/// attribute values honoured). Stops counting once past `limit`.
fn depth(doc: &str, limit: usize) -> usize {
    let b = doc.as_bytes();
    let (mut i, mut depth, mut deepest) = (0usize, 0usize, 0usize);
    while i < b.len() {
        if b[i] != b'<' {
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'/') => depth = depth.saturating_sub(1),
            Some(b'!' | b'?') => {}
            Some(_) => {
                // An opening tag: find its end, past quoted values.
                let mut j = i + 1;
                let mut quote = None;
                while j < b.len() {
                    match (quote, b[j]) {
                        (None, q @ (b'"' | b'\'')) => quote = Some(q),
                        (Some(q), c) if c == q => quote = None,
                        (None, b'>') => break,
                        _ => {}
                    }
                    j += 1;
                }
                if b.get(j.wrapping_sub(1)) != Some(&b'/') {
                    depth += 1;
                    deepest = deepest.max(depth);
                    if deepest > limit {
                        return deepest;
                    }
                }
                i = j;
            }
            None => {}
        }
        i += 1;
    }
    deepest
}

/// Reads the one shape of an SVG document; the error says why not.
pub fn read(doc: &str) -> Result<Read, String> {
    if doc.len() > MAX_SVG_BYTES {
        return Err(format!("the SVG is longer than {MAX_SVG_BYTES} bytes"));
    }
    if depth(doc, MAX_SVG_DEPTH) > MAX_SVG_DEPTH {
        return Err(format!(
            "the SVG nests elements more than {MAX_SVG_DEPTH} deep"
        ));
    }
    let opts = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: 10_000,
    };
    let tree = roxmltree::Document::parse_with_options(doc, opts)
        .map_err(|e| format!("the SVG is not well-formed XML: {e}"))?;
    let root = tree.root_element();
    if root.tag_name().name() != "svg" {
        return Err("the SvgSelector's value is not an <svg> document".into());
    }
    let view_box = root.attribute("viewBox").map(numbers).transpose()?;
    if view_box
        .as_ref()
        .is_some_and(|v| v.len() != 4 || v[0] != 0.0 || v[1] != 0.0)
    {
        return Err("only a viewBox starting at 0 0 is read".into());
    }
    let percent = view_box.is_some_and(|v| v == [0.0, 0.0, 100.0, 100.0]);
    let mut shapes = root.descendants().filter(|n| {
        n.is_element()
            && matches!(
                n.tag_name().name(),
                "rect" | "ellipse" | "circle" | "polygon" | "polyline" | "line" | "path"
            )
    });
    let (Some(node), None) = (shapes.next(), shapes.next()) else {
        return Err("the SVG must hold exactly one shape".into());
    };
    // A transform would move the shape away from its numbers.
    if node.ancestors().any(|n| n.attribute("transform").is_some()) {
        return Err("an SVG shape with a transform is not read".into());
    }
    let num = |name: &str| -> Result<f64, String> {
        let raw = node
            .attribute(name)
            .ok_or_else(|| format!("<{}> needs {name}", node.tag_name().name()))?;
        number(raw)
    };
    let shape = match node.tag_name().name() {
        "rect" => Shape::Rect {
            // SVG's default for a rect's corner is 0.
            x: node.attribute("x").map_or(Ok(0.0), number)?,
            y: node.attribute("y").map_or(Ok(0.0), number)?,
            w: num("width")?,
            h: num("height")?,
        },
        "ellipse" => Shape::Ellipse {
            cx: num("cx")?,
            cy: num("cy")?,
            rx: num("rx")?,
            ry: num("ry")?,
        },
        "circle" => {
            let r = num("r")?;
            Shape::Ellipse {
                cx: num("cx")?,
                cy: num("cy")?,
                rx: r,
                ry: r,
            }
        }
        "polygon" | "polyline" => {
            let flat = numbers(node.attribute("points").unwrap_or(""))?;
            if flat.len() % 2 != 0 {
                return Err("a polygon's points come in x,y pairs".into());
            }
            Shape::Polygon {
                points: flat.chunks_exact(2).map(|p| [p[0], p[1]]).collect(),
            }
        }
        "line" => Shape::Arrow {
            x1: num("x1")?,
            y1: num("y1")?,
            x2: num("x2")?,
            y2: num("y2")?,
        },
        other => return Err(format!("<{other}> is not a supported shape")),
    };
    Ok(Read { shape, percent })
}

fn number(raw: &str) -> Result<f64, String> {
    let t = raw.trim();
    let t = t.strip_suffix("px").unwrap_or(t);
    t.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{raw:?} is not a number"))
}

/// Numbers separated by white space and/or commas, as in `points` and `viewBox`.
fn numbers(raw: &str) -> Result<Vec<f64>, String> {
    raw.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(number)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_survives_writing_and_reading() {
        let shapes = [
            Shape::Rect {
                x: 1.5,
                y: 2.0,
                w: 3.0,
                h: 4.25,
            },
            Shape::Ellipse {
                cx: 50.0,
                cy: 50.0,
                rx: 10.0,
                ry: 5.0,
            },
            Shape::Polygon {
                points: vec![[10.0, 10.0], [40.0, 12.5], [25.0, 30.0]],
            },
            Shape::Arrow {
                x1: 10.0,
                y1: 10.0,
                x2: 40.0,
                y2: 30.0,
            },
        ];
        for s in shapes {
            let svg = write(&s);
            assert!(svg.contains(r#"viewBox="0 0 100 100""#), "{svg}");
            assert_eq!(
                read(&svg),
                Ok(Read {
                    shape: s,
                    percent: true
                })
            );
        }
    }

    /// Thousands of nested elements would overflow the parser's stack and
    /// abort the process: refused before parsing, however they nest.
    #[test]
    fn deep_or_huge_svg_is_refused_before_it_is_parsed() {
        for (open, close) in [("<g>", "</g>"), ("<svg>", "</svg>"), ("<g a='>'>", "</g>")] {
            let deep = format!(
                "<svg viewBox='0 0 100 100'>{}<rect width='1' height='1'/>{}</svg>",
                open.repeat(100_000),
                close.repeat(100_000)
            );
            assert!(read(&deep).is_err());
            let deep = format!("<svg>{}{}</svg>", open.repeat(5_000), close.repeat(5_000));
            assert!(read(&deep).unwrap_err().contains("deep"), "{open}");
        }
        let ok = format!(
            "<svg>{}<rect width='1' height='1'/>{}</svg>",
            "<g>".repeat(30),
            "</g>".repeat(30)
        );
        assert!(read(&ok).is_ok());
        assert_eq!(depth("<a><b/><c x='/>'><d></d></c></a>", 99), 3);
    }

    #[test]
    fn other_tools_svg_reads_in_pixels_and_bad_svg_says_why() {
        let r = read(r#"<svg xmlns="http://www.w3.org/2000/svg"><polygon points="10 20,30 40 50,60"/></svg>"#)
            .unwrap();
        assert!(!r.percent);
        assert_eq!(
            r.shape,
            Shape::Polygon {
                points: vec![[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]]
            }
        );
        let c = read(r#"<svg viewBox="0 0 800 600"><g><circle cx="5" cy="6" r="2px"/></g></svg>"#)
            .unwrap();
        assert_eq!(
            c.shape,
            Shape::Ellipse {
                cx: 5.0,
                cy: 6.0,
                rx: 2.0,
                ry: 2.0
            }
        );
        for bad in [
            "<svg",
            "<html/>",
            "<svg/>",
            "<svg><rect width='1' height='1'/><rect width='1' height='1'/></svg>",
            "<svg><path d='M0 0'/></svg>",
            "<svg><line x1='a' y1='0' x2='1' y2='1'/></svg>",
            "<svg><polygon points='1 2 3'/></svg>",
            "<svg viewBox='0 0 100 100'><rect width='1' height='1' transform='translate(5,5)'/></svg>",
            "<svg><g transform='scale(2)'><rect width='1' height='1'/></g></svg>",
            "<svg viewBox='10 10 100 100'><rect width='1' height='1'/></svg>",
            "<!DOCTYPE svg [<!ENTITY a 'aaaa'>]><svg><rect width='&a;' height='1'/></svg>",
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }
}
