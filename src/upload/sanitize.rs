//! What makes an uploaded body safe to store (contract §14): it must really be
//! an image of the type it claims, small enough in pixels to decode, and it
//! leaves here without metadata (EXIF and its GPS position, XMP, IPTC, text
//! chunks, comments).
//!
//! Decoding is the `image` crate's (every frame is decoded, so a truncated
//! or corrupt file is refused); the pixel limit is checked from the header
//! before any pixel is decoded, so a small file that claims 60 megapixels
//! costs nothing. Metadata is removed per format:
//! - PNG and WebP keep their compressed pixels as they are; only the chunks
//!   that draw the image survive (an allow-list, via `img-parts`): colour
//!   profiles and animation chunks stay, text, EXIF, XMP, times and unknown
//!   chunks go.
//! - JPEG is decoded, turned upright by its EXIF orientation and encoded
//!   again (quality 90), keeping only its ICC colour profile: no marker
//!   segment of the original (EXIF, XMP, IPTC, comments, trailing bytes)
//!   can reach storage.
//! - GIF frames are copied as they are (palette indices, no re-quantizing)
//!   into a new file by the `gif` crate, which writes no comment or
//!   application extension but the loop count.
//!
//! Pure functions, no I/O: the caller runs them on a blocking thread.

use std::io::Cursor;

use image::codecs::gif::GifDecoder;
use image::codecs::jpeg::{JpegDecoder, JpegEncoder};
use image::codecs::png::PngDecoder;
use image::codecs::webp::WebPDecoder;
use image::{AnimationDecoder, DynamicImage, ImageDecoder, ImageEncoder, ImageFormat, Limits};

/// At most this many frames in an animation (contract §14).
pub const MAX_FRAMES: u64 = 100;

/// The most memory one decode may allocate, in bytes: a 50-megapixel RGBA
/// image with 16-bit channels fits.
const MAX_ALLOC: u64 = 512 * 1024 * 1024;

/// An image type the server stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Png,
    Jpeg,
    Webp,
    Gif,
}

impl Kind {
    /// The kind of a `Content-Type` (parameters ignored, case-insensitive);
    /// `None` for any other type.
    pub fn from_content_type(raw: &str) -> Option<Kind> {
        let essence = raw.split(';').next().unwrap_or("").trim();
        [Kind::Png, Kind::Jpeg, Kind::Webp, Kind::Gif]
            .into_iter()
            .find(|k| k.content_type().eq_ignore_ascii_case(essence))
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Kind::Png => "image/png",
            Kind::Jpeg => "image/jpeg",
            Kind::Webp => "image/webp",
            Kind::Gif => "image/gif",
        }
    }

    fn format(self) -> ImageFormat {
        match self {
            Kind::Png => ImageFormat::Png,
            Kind::Jpeg => ImageFormat::Jpeg,
            Kind::Webp => ImageFormat::WebP,
            Kind::Gif => ImageFormat::Gif,
        }
    }
}

/// A body that passed: the bytes to store and the image's size in pixels
/// (after a JPEG's orientation is applied).
#[derive(Debug)]
pub struct Clean {
    pub bytes: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Why a body was refused: a sentence for the client (`field` `body`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(pub String);

fn refused(msg: impl Into<String>) -> Refused {
    Refused(msg.into())
}

fn broken(kind: Kind, e: impl std::fmt::Display) -> Refused {
    refused(format!(
        "the body is not a readable {} image: {e}",
        kind.content_type()
    ))
}

/// Checks `body` is a `kind` image of at most `max_pixels` pixels over all
/// its frames (and at most [`MAX_FRAMES`] frames), and returns it without
/// metadata.
///
/// Errors: [`Refused`] for an empty body, a body of another (or no) image
/// type, a broken or truncated file, too many pixels or frames.
pub fn clean(kind: Kind, body: &[u8], max_pixels: u64) -> Result<Clean, Refused> {
    if body.is_empty() {
        return Err(refused("the body is empty: send the image's bytes"));
    }
    match image::guess_format(body) {
        Ok(f) if f == kind.format() => {}
        Ok(f) => {
            return Err(refused(format!(
                "the body is {} data, not {} as its Content-Type says",
                f.to_mime_type(),
                kind.content_type()
            )))
        }
        Err(_) => {
            return Err(refused(format!(
                "the body is not a {} image",
                kind.content_type()
            )))
        }
    }
    match kind {
        Kind::Png => png(body, max_pixels),
        Kind::Jpeg => jpeg(body, max_pixels),
        Kind::Webp => webp(body, max_pixels),
        Kind::Gif => gif(body, max_pixels),
    }
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_alloc = Some(MAX_ALLOC);
    l
}

/// Refuses `frames` frames of `w`×`h` when they hold too many pixels.
fn check_pixels(w: u32, h: u32, frames: u64, max_pixels: u64) -> Result<(), Refused> {
    if w == 0 || h == 0 {
        return Err(refused("the image has no pixels"));
    }
    if frames > MAX_FRAMES {
        return Err(refused(format!(
            "the animation has {frames} frames; at most {MAX_FRAMES} are accepted"
        )));
    }
    let pixels = u64::from(w)
        .saturating_mul(u64::from(h))
        .saturating_mul(frames.max(1));
    if pixels > max_pixels {
        return Err(refused(format!(
            "the image is {w}×{h} pixels{}: at most {} megapixels are accepted",
            if frames > 1 {
                format!(" in {frames} frames")
            } else {
                String::new()
            },
            max_pixels / 1_000_000
        )));
    }
    Ok(())
}

/// Decodes every frame of an animation (validating it) and counts them,
/// stopping past the frame limit.
fn decode_frames<'a>(kind: Kind, frames: image::Frames<'a>) -> Result<(), Refused> {
    for (n, f) in frames.enumerate() {
        f.map_err(|e| broken(kind, e))?;
        if n as u64 >= MAX_FRAMES {
            return Err(refused(format!(
                "the animation has more than {MAX_FRAMES} frames"
            )));
        }
    }
    Ok(())
}

/// PNG chunks that draw the image; every other chunk is dropped.
const PNG_KEEP: [&[u8; 4]; 18] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"iCCP", b"sBIT", b"sRGB",
    b"cICP", b"mDCV", b"cLLI", b"bKGD", b"pHYs", b"acTL", b"fcTL", b"fdAT",
];

fn png(body: &[u8], max_pixels: u64) -> Result<Clean, Refused> {
    let kind = Kind::Png;
    let mut dec = PngDecoder::new(Cursor::new(body)).map_err(|e| broken(kind, e))?;
    dec.set_limits(limits()).map_err(|e| broken(kind, e))?;
    let (w, h) = dec.dimensions();
    let parts = img_parts::png::Png::from_bytes(bytes::Bytes::copy_from_slice(body))
        .map_err(|e| broken(kind, e))?;
    // An APNG says how many frames it has before any is decoded.
    let frames = parts
        .chunks()
        .iter()
        .filter(|c| &c.kind() == b"fcTL")
        .count() as u64;
    check_pixels(w, h, frames, max_pixels)?;
    if dec.is_apng().map_err(|e| broken(kind, e))? {
        let apng = dec.apng().map_err(|e| broken(kind, e))?;
        decode_frames(kind, apng.into_frames())?;
    } else {
        DynamicImage::from_decoder(dec).map_err(|e| broken(kind, e))?;
    }
    let mut parts = parts;
    parts
        .chunks_mut()
        .retain(|c| PNG_KEEP.iter().any(|k| **k == c.kind()));
    let mut out = Vec::with_capacity(body.len());
    parts
        .encoder()
        .write_to(&mut out)
        .map_err(|e| broken(kind, e))?;
    Ok(Clean {
        bytes: out,
        width: w,
        height: h,
    })
}

/// WebP chunks that draw the image (VP8X's flags are recomputed from what
/// is left).
const WEBP_KEEP: [&[u8; 4]; 7] = [
    b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF", b"ICCP",
];

fn webp(body: &[u8], max_pixels: u64) -> Result<Clean, Refused> {
    use img_parts::ImageEXIF;
    let kind = Kind::Webp;
    let mut dec = WebPDecoder::new(Cursor::new(body)).map_err(|e| broken(kind, e))?;
    dec.set_limits(limits()).map_err(|e| broken(kind, e))?;
    let (w, h) = dec.dimensions();
    let mut parts = img_parts::webp::WebP::from_bytes(bytes::Bytes::copy_from_slice(body))
        .map_err(|e| broken(kind, e))?;
    let frames = parts.chunks_by_id(*b"ANMF").count() as u64;
    check_pixels(w, h, frames, max_pixels)?;
    if dec.has_animation() {
        decode_frames(kind, dec.into_frames())?;
    } else {
        DynamicImage::from_decoder(dec).map_err(|e| broken(kind, e))?;
    }
    parts
        .chunks_mut()
        .retain(|c| WEBP_KEEP.iter().any(|k| **k == c.id()));
    // Setting (no) EXIF makes the container recompute VP8X's flags.
    parts.set_exif(None);
    let mut out = Vec::with_capacity(body.len());
    parts
        .encoder()
        .write_to(&mut out)
        .map_err(|e| broken(kind, e))?;
    Ok(Clean {
        bytes: out,
        width: w,
        height: h,
    })
}

fn jpeg(body: &[u8], max_pixels: u64) -> Result<Clean, Refused> {
    let kind = Kind::Jpeg;
    let mut dec = JpegDecoder::new(Cursor::new(body)).map_err(|e| broken(kind, e))?;
    dec.set_limits(limits()).map_err(|e| broken(kind, e))?;
    let (w, h) = dec.dimensions();
    check_pixels(w, h, 1, max_pixels)?;
    let orientation = dec.orientation().map_err(|e| broken(kind, e))?;
    let icc = dec.icc_profile().ok().flatten();
    let mut img = DynamicImage::from_decoder(dec).map_err(|e| broken(kind, e))?;
    img.apply_orientation(orientation);
    // JPEG holds 8-bit grey or RGB; anything else is brought to RGB.
    let img = match img {
        DynamicImage::ImageLuma8(_) | DynamicImage::ImageRgb8(_) => img,
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    };
    let mut out = Vec::with_capacity(body.len());
    let mut enc = JpegEncoder::new_with_quality(&mut out, 90);
    if let Some(p) = icc {
        // A profile the encoder cannot carry is dropped, not fatal.
        let _ = enc.set_icc_profile(p);
    }
    let (width, height) = (img.width(), img.height());
    enc.write_image(img.as_bytes(), width, height, img.color().into())
        .map_err(|e| broken(kind, e))?;
    Ok(Clean {
        bytes: out,
        width,
        height,
    })
}

fn gif(body: &[u8], max_pixels: u64) -> Result<Clean, Refused> {
    let kind = Kind::Gif;
    // The header, checked before any frame is decoded.
    {
        let dec = GifDecoder::new(Cursor::new(body)).map_err(|e| broken(kind, e))?;
        let (w, h) = dec.dimensions();
        check_pixels(w, h, 1, max_pixels)?;
    }
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::Indexed);
    if let Some(n) = std::num::NonZeroU64::new(MAX_ALLOC) {
        opts.set_memory_limit(gif::MemoryLimit::Bytes(n));
    }
    let mut dec = opts
        .read_info(Cursor::new(body))
        .map_err(|e| broken(kind, e))?;
    let (w, h) = (dec.width(), dec.height());
    let palette = dec.global_palette().unwrap_or(&[]).to_vec();
    let repeat = dec.repeat();
    let mut out = Vec::with_capacity(body.len());
    {
        let mut enc = gif::Encoder::new(&mut out, w, h, &palette).map_err(|e| broken(kind, e))?;
        if repeat != gif::Repeat::Finite(0) {
            enc.set_repeat(repeat).map_err(|e| broken(kind, e))?;
        }
        let mut frames = 0u64;
        while let Some(frame) = dec.read_next_frame().map_err(|e| broken(kind, e))? {
            frames += 1;
            check_pixels(u32::from(w), u32::from(h), frames, max_pixels)?;
            enc.write_frame(frame).map_err(|e| broken(kind, e))?;
        }
        if frames == 0 {
            return Err(refused("the GIF has no frames"));
        }
    }
    Ok(Clean {
        bytes: out,
        width: u32::from(w),
        height: u32::from(h),
    })
}
