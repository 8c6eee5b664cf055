//! What makes an uploaded body safe to store (contract §14): it must really be
//! an image of the type it claims, small enough in pixels to decode, and it
//! leaves here without metadata (EXIF and its GPS position, XMP, IPTC, text
//! chunks, comments).
//!
//! Decoding is the `image` crate's (every frame is decoded, so a truncated
//! or corrupt file is refused); the pixel limit is checked from the header
//! before any pixel is decoded, so a small file that claims 60 megapixels
//! costs nothing. Metadata is removed per format:
//! - Containers are first cut down to the chunks that draw the image (an
//!   allow-list, via `img-parts`) *before* anything is decoded, so no text
//!   or profile chunk is ever inflated by a decoder, and what is decoded is
//!   what is stored.
//! - A PNG keeps its compressed pixels, cut to exactly their zlib stream
//!   (bytes after its end, in or after the image data, are dropped), and
//!   the stream must inflate to exactly the scanlines the header calls for.
//!   (Writing it anew would make screenshots nearly twice as large, or cost
//!   ten times the CPU.)
//! - WebP keeps its compressed pixels in the kept chunks (`image` cannot
//!   write lossy WebP); VP8X's flags are set to what is left.
//! - JPEG is decoded strictly (`zune-jpeg`: a truncated or corrupt stream
//!   is refused), turned upright by its EXIF orientation and encoded again
//!   (quality 90): no marker segment of the original can reach storage.
//! - GIF frames are copied as they are (palette indices, no re-quantizing)
//!   into a new file by the `gif` crate, which writes no comment or
//!   application extension but the loop count; each frame's place and size
//!   are checked before its pixels are decoded.
//! - A colour profile (ICC) is kept only when it is one: a maintained
//!   colour-management crate (`moxcms`) reads it, within 4 MiB (256 KiB
//!   compressed in a PNG); it is written back under a neutral name.
//!
//! Pure functions, no I/O: the caller runs them on a blocking thread.

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
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

/// The most bytes of a colour profile kept (compressed, in a PNG), and
/// the most it may inflate to: real profiles are kilobytes.
const MAX_ICC_COMPRESSED: usize = 256 * 1024;
const MAX_ICC: u64 = 4 * 1024 * 1024;

/// A colour profile worth keeping: an ICC profile (its header's size and
/// `acsp` signature right) that a maintained colour-management crate
/// (`moxcms`) reads, as that crate writes it back. Anything else is
/// dropped, so arbitrary bytes cannot ride along as a "profile".
fn icc(profile: Vec<u8>) -> Option<Vec<u8>> {
    let declared = profile.get(..4)?;
    let declared = u32::from_be_bytes([declared[0], declared[1], declared[2], declared[3]]);
    let sane = profile.len() >= 128
        && profile.len() as u64 <= MAX_ICC
        && declared as usize == profile.len()
        && profile.get(36..40) == Some(b"acsp".as_slice());
    if !sane {
        return None;
    }
    // Written anew from what was read: bytes the profile's tags do not
    // hold (data appended after them, say) do not survive.
    moxcms::ColorProfile::new_from_slice(&profile)
        .ok()?
        .encode()
        .ok()
        .filter(|p| p.len() as u64 <= MAX_ICC)
}

/// The profile of a PNG `iCCP` chunk (name, NUL, method 0, zlib data),
/// inflated within bounds and checked; `None` when it is not one to keep.
fn png_icc(chunk: &[u8]) -> Option<Vec<u8>> {
    use std::io::Read;
    let nul = chunk.iter().take(80).position(|b| *b == 0)?;
    let rest = chunk.get(nul + 1..)?;
    let (&method, compressed) = rest.split_first()?;
    if method != 0 || compressed.len() > MAX_ICC_COMPRESSED {
        return None;
    }
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(compressed)
        .take(MAX_ICC + 1)
        .read_to_end(&mut out)
        .ok()?;
    icc(out)
}

/// An `iCCP` chunk holding `profile` under a neutral name.
fn png_icc_chunk(profile: &[u8]) -> Option<img_parts::png::PngChunk> {
    use std::io::Write;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(profile).ok()?;
    let mut data = b"ICC profile\0\0".to_vec();
    data.extend(z.finish().ok()?);
    Some(img_parts::png::PngChunk::new(
        *b"iCCP",
        bytes::Bytes::from(data),
    ))
}

/// An animated PNG's frames must be the ones its `acTL` counts, each inside
/// the image (APNG specification: `num_frames` equals the number of `fcTL`
/// chunks; a frame's region lies within the canvas), so no frame a decoder
/// never reaches, nor one larger than the image, is stored unchecked.
fn apng_frames(parts: &img_parts::png::Png, w: u32, h: u32) -> Result<(), Refused> {
    let kind = Kind::Png;
    let be = |d: &[u8], i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(d.get(i..i + 4)?.try_into().ok()?))
    };
    let fctl: Vec<_> = parts.chunks_by_type(*b"fcTL").collect();
    let Some(actl) = parts.chunk_by_type(*b"acTL") else {
        return if fctl.is_empty() && !parts.chunks().iter().any(|c| &c.kind() == b"fdAT") {
            Ok(())
        } else {
            Err(broken(kind, "frames without an animation header"))
        };
    };
    let count = be(actl.contents(), 0).ok_or_else(|| broken(kind, "a bad acTL"))?;
    if u64::from(count) != fctl.len() as u64 {
        return Err(broken(
            kind,
            format!(
                "its animation names {count} frames and holds {}",
                fctl.len()
            ),
        ));
    }
    for f in fctl {
        let d = f.contents();
        let (Some(fw), Some(fh), Some(x), Some(y)) = (be(d, 4), be(d, 8), be(d, 12), be(d, 16))
        else {
            return Err(broken(kind, "a bad fcTL"));
        };
        let inside = u64::from(x) + u64::from(fw) <= u64::from(w)
            && u64::from(y) + u64::from(fh) <= u64::from(h);
        if fw == 0 || fh == 0 || !inside {
            return Err(refused(format!(
                "a frame of {fw}×{fh} at ({x}, {y}) lies outside the {w}×{h} image"
            )));
        }
    }
    Ok(())
}

/// Cuts the kept PNG chunks to what the image uses: a palette to what the
/// bit depth can index (none for a true-colour image, where it is only a
/// suggestion), transparency to the palette's entries.
fn png_tidy(parts: &mut img_parts::png::Png) {
    let Some(ihdr) = parts.chunk_by_type(*b"IHDR").map(|c| c.contents().clone()) else {
        return;
    };
    let (depth, colour) = (
        u32::from(ihdr.get(8).copied().unwrap_or(8)),
        ihdr.get(9).copied().unwrap_or(0),
    );
    let entries = 1usize << depth.min(8);
    let mut palette = 0;
    for c in parts.chunks_mut() {
        if &c.kind() == b"PLTE" && colour == 3 {
            let keep = (c.contents().len() / 3).min(entries);
            palette = keep;
            let data = c.contents().slice(..keep * 3);
            *c = img_parts::png::PngChunk::new(*b"PLTE", data);
        } else if &c.kind() == b"tRNS" && colour == 3 {
            let keep = c.contents().len().min(palette);
            let data = c.contents().slice(..keep);
            *c = img_parts::png::PngChunk::new(*b"tRNS", data);
        }
    }
    parts
        .chunks_mut()
        .retain(|c| !(&c.kind() == b"PLTE" && colour != 3));
}

/// PNG chunks that draw the image; every other chunk is dropped before
/// anything is decoded (so no text or profile chunk is ever inflated by
/// the decoder). The profile is taken out separately (see [`png_icc`]).
const PNG_KEEP: [&[u8; 4]; 15] = [
    b"IHDR", b"PLTE", b"IDAT", b"IEND", b"tRNS", b"cHRM", b"gAMA", b"sBIT", b"sRGB", b"cICP",
    b"mDCV", b"cLLI", b"acTL", b"fcTL", b"fdAT",
];

/// The bytes of filtered scanlines a PNG of this header decodes to: a
/// filter byte and the row's bytes per row, per Adam7 pass when interlaced
/// (PNG §7.2, §8.2). `None` for a header that names no valid format.
fn png_raw_len(ihdr: &[u8]) -> Option<u64> {
    let be = |i: usize| -> Option<u64> {
        let b = ihdr.get(i..i + 4)?;
        Some(u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
    };
    let (w, h) = (be(0)?, be(4)?);
    let (depth, colour, interlace) = (*ihdr.get(8)?, *ihdr.get(9)?, *ihdr.get(12)?);
    let channels = match colour {
        0 | 3 => 1,
        2 => 3,
        4 => 2,
        6 => 4,
        _ => return None,
    };
    let bits = u64::from(depth) * channels;
    let rows = |pw: u64, ph: u64| {
        if pw == 0 || ph == 0 {
            0
        } else {
            ph * (1 + (pw * bits).div_ceil(8))
        }
    };
    Some(match interlace {
        0 => rows(w, h),
        1 => {
            // Adam7: (x start, y start, x step, y step) of each pass.
            const PASSES: [(u64, u64, u64, u64); 7] = [
                (0, 0, 8, 8),
                (4, 0, 8, 8),
                (0, 4, 4, 8),
                (2, 0, 4, 4),
                (0, 2, 2, 4),
                (1, 0, 2, 2),
                (0, 1, 1, 2),
            ];
            PASSES
                .iter()
                .map(|&(x0, y0, dx, dy)| {
                    rows(
                        w.saturating_sub(x0).div_ceil(dx),
                        h.saturating_sub(y0).div_ceil(dy),
                    )
                })
                .sum()
        }
        _ => return None,
    })
}

/// The image data of a PNG (its IDAT chunks, joined) cut to exactly its
/// zlib stream: whatever follows the stream's end (inside the last IDAT or
/// in further ones) is dropped. The stream must inflate to exactly the
/// scanlines the header calls for; more would be bytes no decoder shows.
fn png_image_data(parts: &img_parts::png::Png) -> Result<Vec<u8>, Refused> {
    let kind = Kind::Png;
    let ihdr = parts
        .chunk_by_type(*b"IHDR")
        .ok_or_else(|| broken(kind, "no IHDR"))?;
    let want = png_raw_len(ihdr.contents()).ok_or_else(|| broken(kind, "a bad IHDR"))?;
    let mut data = Vec::new();
    for c in parts.chunks_by_type(*b"IDAT") {
        data.extend_from_slice(c.contents());
    }
    let mut z = flate2::Decompress::new(true);
    let mut sink = vec![0u8; 64 * 1024];
    loop {
        let (read, written) = (z.total_in(), z.total_out());
        let rest = usize::try_from(read)
            .ok()
            .and_then(|r| data.get(r..))
            .unwrap_or_default();
        let status = z
            .decompress(rest, &mut sink, flate2::FlushDecompress::None)
            .map_err(|e| broken(kind, e))?;
        if z.total_out() > want {
            return Err(broken(kind, "its image data holds more than its pixels"));
        }
        if status == flate2::Status::StreamEnd {
            break;
        }
        if (z.total_in(), z.total_out()) == (read, written) {
            // No input left, and the stream has not ended.
            return Err(broken(kind, "its image data stops early"));
        }
    }
    if z.total_out() != want {
        return Err(broken(kind, "its image data does not match its size"));
    }
    let used = usize::try_from(z.total_in()).map_err(|e| broken(kind, e))?;
    data.truncate(used);
    Ok(data)
}

fn png(body: &[u8], max_pixels: u64) -> Result<Clean, Refused> {
    let kind = Kind::Png;
    let mut parts = img_parts::png::Png::from_bytes(bytes::Bytes::copy_from_slice(body))
        .map_err(|e| broken(kind, e))?;
    let profile = parts
        .chunk_by_type(*b"iCCP")
        .and_then(|c| png_icc(c.contents()));
    parts
        .chunks_mut()
        .retain(|c| PNG_KEEP.iter().any(|k| **k == c.kind()));
    // An APNG says how many frames it has before any is decoded.
    let frames = parts
        .chunks()
        .iter()
        .filter(|c| &c.kind() == b"fcTL")
        .count() as u64;
    // The header's size is checked before the image data is inflated.
    let (w, h) = parts
        .chunk_by_type(*b"IHDR")
        .and_then(|c| {
            let d = c.contents();
            Some((
                u32::from_be_bytes(d.get(0..4)?.try_into().ok()?),
                u32::from_be_bytes(d.get(4..8)?.try_into().ok()?),
            ))
        })
        .ok_or_else(|| broken(kind, "no IHDR"))?;
    check_pixels(w, h, frames, max_pixels)?;
    apng_frames(&parts, w, h)?;
    png_tidy(&mut parts);
    // The image data, exactly: one IDAT where the first one was.
    let data = png_image_data(&parts)?;
    let first = parts
        .chunks()
        .iter()
        .position(|c| &c.kind() == b"IDAT")
        .ok_or_else(|| broken(kind, "no image data"))?;
    parts.chunks_mut().retain(|c| &c.kind() != b"IDAT");
    parts.chunks_mut().insert(
        first,
        img_parts::png::PngChunk::new(*b"IDAT", bytes::Bytes::from(data)),
    );
    if let Some(chunk) = profile.as_deref().and_then(png_icc_chunk) {
        parts.chunks_mut().insert(1, chunk);
    }
    let mut out = Vec::with_capacity(body.len());
    parts
        .encoder()
        .write_to(&mut out)
        .map_err(|e| broken(kind, e))?;
    // What is decoded, every frame, is what will be stored.
    let mut dec = PngDecoder::new(Cursor::new(&out[..])).map_err(|e| broken(kind, e))?;
    dec.set_limits(limits()).map_err(|e| broken(kind, e))?;
    if (w, h) != dec.dimensions() {
        return Err(broken(kind, "its size changed on the way"));
    }
    if dec.is_apng().map_err(|e| broken(kind, e))? {
        let apng = dec.apng().map_err(|e| broken(kind, e))?;
        decode_frames(kind, apng.into_frames())?;
    } else {
        DynamicImage::from_decoder(dec).map_err(|e| broken(kind, e))?;
    }
    Ok(Clean {
        bytes: out,
        width: w,
        height: h,
    })
}

/// WebP chunks that draw the image.
const WEBP_KEEP: [&[u8; 4]; 6] = [b"VP8X", b"VP8 ", b"VP8L", b"ALPH", b"ANIM", b"ANMF"];

fn webp(body: &[u8], max_pixels: u64) -> Result<Clean, Refused> {
    let kind = Kind::Webp;
    let mut parts = img_parts::webp::WebP::from_bytes(bytes::Bytes::copy_from_slice(body))
        .map_err(|e| broken(kind, e))?;
    let profile = parts
        .chunk_by_id(*b"ICCP")
        .and_then(|c| c.content().data())
        .filter(|d| d.len() as u64 <= MAX_ICC)
        .and_then(|d| icc(d.to_vec()));
    parts
        .chunks_mut()
        .retain(|c| WEBP_KEEP.iter().any(|k| **k == c.id()));
    if let Some(p) = profile {
        // The profile goes right after VP8X, where the format puts it.
        let at = usize::from(parts.chunks().first().is_some_and(|c| &c.id() == b"VP8X"));
        parts.chunks_mut().insert(
            at,
            img_parts::riff::RiffChunk::new(
                *b"ICCP",
                img_parts::riff::RiffContent::Data(bytes::Bytes::from(p)),
            ),
        );
    }
    webp_flags(&mut parts);
    for c in parts.chunks_mut() {
        if &c.id() != b"ANMF" {
            continue;
        }
        let Some(data) = c.content().data() else {
            return Err(broken(kind, "an animation frame without data"));
        };
        let frame = webp_frame(data).ok_or_else(|| broken(kind, "a broken animation frame"))?;
        *c = img_parts::riff::RiffChunk::new(
            *b"ANMF",
            img_parts::riff::RiffContent::Data(bytes::Bytes::from(frame)),
        );
    }
    let frames = parts.chunks_by_id(*b"ANMF").count() as u64;
    let mut out = Vec::with_capacity(body.len());
    parts
        .encoder()
        .write_to(&mut out)
        .map_err(|e| broken(kind, e))?;
    // What is decoded is what will be stored.
    let mut dec = WebPDecoder::new(Cursor::new(&out[..])).map_err(|e| broken(kind, e))?;
    dec.set_limits(limits()).map_err(|e| broken(kind, e))?;
    let (w, h) = dec.dimensions();
    check_pixels(w, h, frames, max_pixels)?;
    if dec.has_animation() {
        decode_frames(kind, dec.into_frames())?;
    } else {
        DynamicImage::from_decoder(dec).map_err(|e| broken(kind, e))?;
    }
    Ok(Clean {
        bytes: out,
        width: w,
        height: h,
    })
}

/// Writes VP8X anew from what the kept chunks hold: the canvas size as
/// given, the alpha flag as given, ICC and animation flags only when those
/// chunks are there, EXIF, XMP and every reserved bit and byte zero.
fn webp_flags(parts: &mut img_parts::webp::WebP) {
    let icc = parts.has_chunk(*b"ICCP");
    let anim = parts.has_chunk(*b"ANIM");
    for c in parts.chunks_mut() {
        if &c.id() != b"VP8X" {
            continue;
        }
        if let img_parts::riff::RiffContent::Data(d) = c.content_mut() {
            if let (Some(&first), Some(size)) = (d.first(), d.get(4..10)) {
                // Bits: 0x20 ICC, 0x10 alpha, 0x08 EXIF, 0x04 XMP, 0x02 animation.
                let mut f = first & 0x10;
                if icc {
                    f |= 0x20;
                }
                if anim {
                    f |= 0x02;
                }
                let mut v = vec![f, 0, 0, 0];
                v.extend_from_slice(size);
                *d = bytes::Bytes::from(v);
            }
        }
    }
}

/// An animation frame's payload (`ANMF`: a 16-byte header, then chunks)
/// with only the chunks that draw it (`ALPH`, `VP8 `, `VP8L`).
fn webp_frame(payload: &[u8]) -> Option<Vec<u8>> {
    let mut out = payload.get(..16)?.to_vec();
    let mut i = 16;
    while i < payload.len() {
        let id = payload.get(i..i + 4)?;
        let len = u32::from_le_bytes(payload.get(i + 4..i + 8)?.try_into().ok()?) as usize;
        let end = i.checked_add(8)?.checked_add(len)?;
        let chunk = payload.get(i..end)?;
        if [b"ALPH", b"VP8 ", b"VP8L"]
            .iter()
            .any(|k| k.as_slice() == id)
        {
            out.extend_from_slice(chunk);
            if len % 2 == 1 {
                out.push(0);
            }
        }
        // Chunks are padded to an even length.
        i = end + (len % 2);
    }
    Some(out)
}

fn jpeg(body: &[u8], max_pixels: u64) -> Result<Clean, Refused> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let kind = Kind::Jpeg;
    let options = DecoderOptions::default()
        // Strict: a truncated or corrupt stream is an error, not grey
        // pixels filling what is missing.
        .set_strict_mode(true)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX);
    let mut dec = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(body), options);
    dec.decode_headers().map_err(|e| broken(kind, e))?;
    let (w, h) = dec
        .dimensions()
        .ok_or_else(|| refused("the JPEG has no size"))?;
    let (w, h) = (
        u32::try_from(w).map_err(|_| refused("the JPEG is too large"))?,
        u32::try_from(h).map_err(|_| refused("the JPEG is too large"))?,
    );
    check_pixels(w, h, 1, max_pixels)?;
    jpeg_complete(body, w, h)?;
    let grey = matches!(dec.input_colorspace(), Some(ColorSpace::Luma));
    let out_space = if grey {
        ColorSpace::Luma
    } else {
        ColorSpace::RGB
    };
    let options = dec.options().jpeg_set_out_colorspace(out_space);
    dec.set_options(options);
    let orientation = dec
        .exif()
        .and_then(|e| image::metadata::Orientation::from_exif_chunk(e))
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let profile = dec.icc_profile().and_then(icc);
    let pixels = dec.decode().map_err(|e| broken(kind, e))?;
    let mut img = if grey {
        image::GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8)
    } else {
        image::RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8)
    }
    .ok_or_else(|| refused("the JPEG decoded to fewer pixels than its size"))?;
    img.apply_orientation(orientation);
    let mut out = Vec::with_capacity(body.len());
    let mut enc = JpegEncoder::new_with_quality(&mut out, 90);
    if let Some(p) = profile {
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

/// Where a JPEG's first scan starts (just past its SOS segment), walking
/// the marker segments from SOI; `None` when the structure is broken.
fn jpeg_first_scan(body: &[u8]) -> Option<usize> {
    let mut i = 2; // past SOI
    loop {
        if *body.get(i)? != 0xFF {
            return None;
        }
        while *body.get(i)? == 0xFF {
            i += 1; // fill bytes
        }
        let marker = *body.get(i)?;
        i += 1;
        if (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            continue; // no length
        }
        let len = usize::from(u16::from_be_bytes([*body.get(i)?, *body.get(i + 1)?]));
        if len < 2 {
            return None;
        }
        i = i.checked_add(len)?;
        if marker == 0xDA {
            return Some(i);
        }
    }
}

/// What a lenient decoder would fill with grey is refused instead: a JPEG
/// must end (an EOI marker after its first scan; entropy-coded data never
/// holds one) and hold at least one bit per 8×8 block of its frame (the
/// least any scan spends on a block), so a few hundred bytes cannot claim
/// 7000×7000 pixels.
fn jpeg_complete(body: &[u8], w: u32, h: u32) -> Result<(), Refused> {
    let scan = jpeg_first_scan(body)
        .ok_or_else(|| refused("the JPEG's structure is broken (no scan found)"))?;
    let data = body.get(scan..).unwrap_or_default();
    if !data.windows(2).any(|m| m == [0xFF, 0xD9]) {
        return Err(broken(Kind::Jpeg, "its data stops before the end marker"));
    }
    let blocks = u64::from(w.div_ceil(8)) * u64::from(h.div_ceil(8));
    if (data.len() as u64).saturating_mul(8) < blocks {
        return Err(broken(
            Kind::Jpeg,
            format!("{} bytes of data cannot hold {w}×{h} pixels", data.len()),
        ));
    }
    Ok(())
}

fn gif(body: &[u8], max_pixels: u64) -> Result<Clean, Refused> {
    let kind = Kind::Gif;
    let mut opts = gif::DecodeOptions::new();
    opts.set_color_output(gif::ColorOutput::Indexed);
    if let Some(n) = std::num::NonZeroU64::new(MAX_ALLOC) {
        opts.set_memory_limit(gif::MemoryLimit::Bytes(n));
    }
    let mut dec = opts
        .read_info(Cursor::new(body))
        .map_err(|e| broken(kind, e))?;
    let (w, h) = (dec.width(), dec.height());
    check_pixels(u32::from(w), u32::from(h), 1, max_pixels)?;
    let palette = dec.global_palette().unwrap_or(&[]).to_vec();
    let repeat = dec.repeat();
    let mut out = Vec::with_capacity(body.len());
    {
        let mut enc = gif::Encoder::new(&mut out, w, h, &palette).map_err(|e| broken(kind, e))?;
        if repeat != gif::Repeat::Finite(0) {
            enc.set_repeat(repeat).map_err(|e| broken(kind, e))?;
        }
        let mut frames = 0u64;
        // Each frame's place and size are read, and checked, before its
        // pixels are decoded.
        while let Some(info) = dec.next_frame_info().map_err(|e| broken(kind, e))? {
            let inside = u32::from(info.left) + u32::from(info.width) <= u32::from(w)
                && u32::from(info.top) + u32::from(info.height) <= u32::from(h);
            if !inside {
                return Err(refused(format!(
                    "a frame of {}×{} at ({}, {}) lies outside the {w}×{h} image",
                    info.width, info.height, info.left, info.top
                )));
            }
            let mut frame = info.clone();
            frames += 1;
            check_pixels(u32::from(w), u32::from(h), frames, max_pixels)?;
            let mut pixels = vec![0u8; dec.buffer_size()];
            dec.read_into_buffer(&mut pixels)
                .map_err(|e| broken(kind, e))?;
            // The pixels come out in row order: written as such.
            frame.interlaced = false;
            frame.buffer = std::borrow::Cow::Owned(pixels);
            enc.write_frame(&frame).map_err(|e| broken(kind, e))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        c.extend_from_slice(&crc.sum().to_be_bytes());
        c
    }

    /// An 8-bit grey PNG of `w`×`h`, Adam7-interlaced when asked, whose
    /// scanlines are `raw` (filter bytes included) followed by `extra`.
    fn grey_png(w: u32, h: u32, interlaced: bool, raw: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut ihdr = w.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, u8::from(interlaced)]);
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(raw).unwrap();
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        out.extend(chunk(b"IHDR", &ihdr));
        out.extend(chunk(b"IDAT", &z.finish().unwrap()));
        out.extend(chunk(b"IEND", &[]));
        out
    }

    #[test]
    fn the_scanline_length_follows_the_format_and_adam7() {
        let ihdr = |w: u32, h: u32, depth: u8, colour: u8, interlace: u8| {
            let mut v = w.to_be_bytes().to_vec();
            v.extend_from_slice(&h.to_be_bytes());
            v.extend_from_slice(&[depth, colour, 0, 0, interlace]);
            v
        };
        assert_eq!(png_raw_len(&ihdr(3, 2, 8, 2, 0)), Some(2 * (1 + 9)));
        assert_eq!(png_raw_len(&ihdr(9, 1, 1, 0, 0)), Some(1 + 2));
        assert_eq!(png_raw_len(&ihdr(2, 2, 16, 6, 0)), Some(2 * (1 + 16)));
        // Adam7 on 8×8 grey: passes of 1×1, 1×1, 2×1, 2×2, 4×2, 4×4, 8×4.
        assert_eq!(
            png_raw_len(&ihdr(8, 8, 8, 0, 1)),
            Some(2 + 2 + 3 + 6 + 10 + 20 + 36)
        );
        // One pixel: only the first pass has it.
        assert_eq!(png_raw_len(&ihdr(1, 1, 8, 2, 1)), Some(4));
        assert_eq!(png_raw_len(&ihdr(1, 1, 8, 5, 0)), None);
        assert_eq!(png_raw_len(&ihdr(1, 1, 8, 2, 2)), None);
    }

    #[test]
    fn interlaced_pngs_pass_and_data_beyond_the_pixels_does_not() {
        let want = 2 + 2 + 3 + 6 + 10 + 20 + 36;
        let raw: Vec<u8> = (0..want)
            .map(|i| if i % 9 == 0 { 0 } else { (i * 37 % 256) as u8 })
            .collect();
        // Filter bytes must be 0..=4: make every row start with one.
        let mut raw = raw;
        let mut at = 0;
        for (pw, ph) in [(1, 1), (1, 1), (2, 1), (2, 2), (4, 2), (4, 4), (8, 4)] {
            for _ in 0..ph {
                raw[at] = 0;
                at += 1 + pw;
            }
        }
        let ok = grey_png(8, 8, true, &raw);
        let clean = png(&ok, 1_000_000).expect("an interlaced PNG passes");
        assert_eq!((clean.width, clean.height), (8, 8));
        let mut more = raw.clone();
        more.extend_from_slice(b"lat=48.8566 lon=2.3522");
        let err = png(&grey_png(8, 8, true, &more), 1_000_000).unwrap_err();
        assert!(err.0.contains("more than its pixels"), "{err}");
        let err = png(&grey_png(8, 8, true, &raw[..40]), 1_000_000).unwrap_err();
        assert!(err.0.contains("does not match"), "{err}");
    }
}
