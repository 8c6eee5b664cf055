//! Regions (contract §10): reading a shape from JSON, its limits, and the
//! rounding to 3 decimals that makes "the same shape" a well-defined question.
//!
//! Limits are checked on the rounded numbers, in whole thousandths, so a
//! stored shape always satisfies them exactly (no `70.1 + 29.9 > 100` from
//! floating point) and a shape that passes once passes again when replayed.

use serde_json::Value;

use super::DomainError;
use crate::protocol::Shape;

/// Most points of a polygon.
pub const MAX_POINTS: usize = 64;
/// Fewest points of a polygon.
pub const MIN_POINTS: usize = 3;
/// 100 % in thousandths.
const FULL: i64 = 100_000;

fn invalid(message: impl Into<String>) -> DomainError {
    DomainError::invalid("shape", message)
}

/// A number of the shape in thousandths of a percent: finite and within
/// 0..=100 % after rounding.
fn milli(obj: &serde_json::Map<String, Value>, key: &str) -> Result<i64, DomainError> {
    let v = match obj.get(key) {
        Some(Value::Number(n)) => n.as_f64(),
        Some(_) => return Err(invalid(format!("shape.{key} must be a number"))),
        None => return Err(invalid(format!("shape.{key} is required"))),
    };
    coordinate(v, key)
}

/// Rounded to thousandths first, then checked: `100.0004` is 100.
fn coordinate(v: Option<f64>, what: &str) -> Result<i64, DomainError> {
    let m = v.map(|v| (v * 1000.0).round());
    match m {
        Some(m) if m.is_finite() && (0.0..=100_000.0).contains(&m) => {
            // In range, so the cast is exact.
            Ok(m as i64)
        }
        _ => Err(invalid(format!(
            "shape.{what} must be a number within 0..=100"
        ))),
    }
}

fn pct(m: i64) -> f64 {
    // Integers up to 1e5 are exact in f64, and the division gives the
    // closest double to the decimal with 3 places.
    m as f64 / 1000.0
}

/// Reads and checks a shape, rounded to 3 decimals. Every refusal is an
/// `invalid_input` of the field `shape`, whose message names the part.
pub fn parse(v: &Value) -> Result<Shape, DomainError> {
    let Value::Object(obj) = v else {
        return Err(invalid("shape must be an object with a type"));
    };
    let kind = obj.get("type").and_then(Value::as_str);
    match kind {
        Some("rect") => {
            let (x, y, w, h) = (
                milli(obj, "x")?,
                milli(obj, "y")?,
                milli(obj, "w")?,
                milli(obj, "h")?,
            );
            if w == 0 || h == 0 {
                return Err(invalid("a rect's w and h must be greater than 0"));
            }
            if x + w > FULL || y + h > FULL {
                return Err(invalid(
                    "a rect must lie inside the image (x + w <= 100, y + h <= 100)",
                ));
            }
            Ok(Shape::Rect {
                x: pct(x),
                y: pct(y),
                w: pct(w),
                h: pct(h),
            })
        }
        Some("ellipse") => {
            let (cx, cy, rx, ry) = (
                milli(obj, "cx")?,
                milli(obj, "cy")?,
                milli(obj, "rx")?,
                milli(obj, "ry")?,
            );
            if rx == 0 || ry == 0 {
                return Err(invalid("an ellipse's rx and ry must be greater than 0"));
            }
            if cx < rx || cx + rx > FULL || cy < ry || cy + ry > FULL {
                return Err(invalid("an ellipse must lie inside the image"));
            }
            Ok(Shape::Ellipse {
                cx: pct(cx),
                cy: pct(cy),
                rx: pct(rx),
                ry: pct(ry),
            })
        }
        Some("polygon") => {
            let Some(Value::Array(list)) = obj.get("points") else {
                return Err(invalid("a polygon needs points: a list of [x, y]"));
            };
            if !(MIN_POINTS..=MAX_POINTS).contains(&list.len()) {
                return Err(invalid(format!(
                    "a polygon has {MIN_POINTS}..={MAX_POINTS} points"
                )));
            }
            let points = list
                .iter()
                .map(|p| match p.as_array().map(Vec::as_slice) {
                    Some([x, y]) => Ok([
                        pct(coordinate(x.as_f64(), "points")?),
                        pct(coordinate(y.as_f64(), "points")?),
                    ]),
                    _ => Err(invalid("each polygon point is a pair [x, y]")),
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Shape::Polygon { points })
        }
        Some("arrow") => {
            let (x1, y1, x2, y2) = (
                milli(obj, "x1")?,
                milli(obj, "y1")?,
                milli(obj, "x2")?,
                milli(obj, "y2")?,
            );
            if (x1, y1) == (x2, y2) {
                return Err(invalid("an arrow's two ends must differ"));
            }
            Ok(Shape::Arrow {
                x1: pct(x1),
                y1: pct(y1),
                x2: pct(x2),
                y2: pct(y2),
            })
        }
        Some(other) => Err(invalid(format!(
            "unknown shape type {other:?}: rect, ellipse, polygon or arrow"
        ))),
        None => Err(invalid(
            "shape needs a type: rect, ellipse, polygon or arrow",
        )),
    }
}

/// Checks a shape built in code (imports) by the same rules as one sent by
/// a client, and rounds it.
pub fn check(s: &Shape) -> Result<Shape, DomainError> {
    let v =
        serde_json::to_value(s).map_err(|_| invalid("the shape has numbers JSON cannot hold"))?;
    parse(&v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: Value) -> Shape {
        parse(&v).unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    fn refused(v: Value) {
        let e = parse(&v).expect_err(&v.to_string());
        assert!(
            matches!(e, DomainError::Invalid { field: "shape", .. }),
            "{e:?}"
        );
    }

    #[test]
    fn each_shape_reads_and_rounds_to_three_decimals() {
        assert_eq!(
            ok(json!({"type": "rect", "x": 10.00049, "y": 20, "w": 30, "h": 15.1236})),
            Shape::Rect {
                x: 10.0,
                y: 20.0,
                w: 30.0,
                h: 15.124
            }
        );
        assert_eq!(
            ok(json!({"type": "ellipse", "cx": 50, "cy": 5, "rx": 50, "ry": 5})),
            Shape::Ellipse {
                cx: 50.0,
                cy: 5.0,
                rx: 50.0,
                ry: 5.0
            }
        );
        assert_eq!(
            ok(json!({"type": "polygon", "points": [[0, 0], [100, 0], [50.5, 100]]})),
            Shape::Polygon {
                points: vec![[0.0, 0.0], [100.0, 0.0], [50.5, 100.0]]
            }
        );
        assert_eq!(
            ok(json!({"type": "arrow", "x1": 1, "y1": 1, "x2": 1, "y2": 1.001})),
            Shape::Arrow {
                x1: 1.0,
                y1: 1.0,
                x2: 1.0,
                y2: 1.001
            }
        );
        // Bounds are inclusive, and compared exactly after rounding.
        ok(json!({"type": "rect", "x": 70.1, "y": 0, "w": 29.9, "h": 100}));
        // Rounded, then checked.
        assert_eq!(
            ok(json!({"type": "rect", "x": -0.0004, "y": 0, "w": 100.0004, "h": 1})),
            Shape::Rect {
                x: 0.0,
                y: 0.0,
                w: 100.0,
                h: 1.0
            }
        );
        ok(json!({"type": "polygon", "points": vec![[1, 2]; MAX_POINTS]}));
    }

    #[test]
    fn every_invalid_form_is_refused_as_the_shape_field() {
        refused(json!("rect"));
        refused(json!({"x": 1}));
        refused(json!({"type": "circle", "cx": 1}));
        refused(json!({"type": "rect", "x": 10, "y": 20, "w": 0, "h": 5}));
        refused(json!({"type": "rect", "x": 10, "y": 20, "w": 0.0004, "h": 5}));
        refused(json!({"type": "rect", "x": 80, "y": 20, "w": 20.001, "h": 5}));
        refused(json!({"type": "rect", "x": -1, "y": 20, "w": 2, "h": 5}));
        refused(json!({"type": "rect", "x": "1", "y": 20, "w": 2, "h": 5}));
        refused(json!({"type": "rect", "x": 1, "y": 20, "w": 2}));
        refused(json!({"type": "ellipse", "cx": 5, "cy": 50, "rx": 6, "ry": 5}));
        refused(json!({"type": "ellipse", "cx": 50, "cy": 50, "rx": 0, "ry": 5}));
        refused(json!({"type": "polygon", "points": [[0, 0], [1, 1]]}));
        refused(json!({"type": "polygon", "points": vec![[1, 2]; MAX_POINTS + 1]}));
        refused(json!({"type": "polygon", "points": [[0, 0], [1, 1], [2]]}));
        refused(json!({"type": "polygon", "points": [[0, 0], [1, 1], [2, 101]]}));
        refused(json!({"type": "polygon", "points": "0,0 1,1 2,2"}));
        refused(json!({"type": "arrow", "x1": 5, "y1": 5, "x2": 5.0004, "y2": 5}));
        refused(json!({"type": "arrow", "x1": 5, "y1": 5, "x2": 1e300, "y2": 5}));
    }
}
