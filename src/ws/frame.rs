//! RFC 6455 framing for the server side: just what the protocol needs
//! (text frames, control frames, fragmentation, size limits, no extensions).
//!
//! Kept by hand rather than through a general WebSocket crate so an idle
//! connection owns no buffers at all: bytes are read header by header into
//! allocations sized to the frame, and freed once it is handled.

use bytes::Bytes;

use crate::protocol::CloseCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// One complete message or control frame from the peer.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Text(String),
    Binary(Vec<u8>),
    Ping(Bytes),
    Pong,
    Close(Option<u16>),
}

/// Why reading stopped, with the close code to answer.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("message too big")]
    TooBig,
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("text is not UTF-8")]
    BadUtf8,
    #[error("connection lost: {0}")]
    Io(#[from] std::io::Error),
}

impl FrameError {
    /// The reason sent with the close frame.
    pub fn close_reason(&self) -> &'static str {
        match self {
            FrameError::TooBig => "message too big",
            FrameError::Protocol(_) => "protocol error",
            FrameError::BadUtf8 => "text is not UTF-8",
            FrameError::Io(_) => "",
        }
    }

    /// The close code this error calls for (`None` when the peer is gone).
    pub fn close_code(&self) -> Option<CloseCode> {
        match self {
            FrameError::TooBig => Some(CloseCode::MessageTooBig),
            FrameError::Protocol(_) => Some(CloseCode::ProtocolError),
            FrameError::BadUtf8 => Some(CloseCode::InvalidPayload),
            FrameError::Io(_) => None,
        }
    }
}

/// Reads messages; holds the fragments of a message in progress, if any.
#[derive(Debug)]
pub struct Reader {
    max_message: usize,
    partial: Option<(u8, Vec<u8>)>,
}

/// Whether a close code may be sent by a peer (RFC 6455 §7.4.1, §7.4.2, and
/// IANA's registry): 1000–1003, 1007–1014 and 3000–4999. 1004–1006 and 1015
/// are reserved or only reported locally; the rest are unassigned.
pub fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

impl Reader {
    pub fn new(max_message: usize) -> Self {
        Reader {
            max_message,
            partial: None,
        }
    }

    /// Changes the largest message accepted from now on (bytes).
    pub fn set_max_message(&mut self, max_message: usize) {
        self.max_message = max_message;
    }

    pub async fn read<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<Incoming, FrameError> {
        loop {
            let mut head = [0u8; 2];
            r.read_exact(&mut head).await?;
            let fin = head[0] & 0x80 != 0;
            if head[0] & 0x70 != 0 {
                return Err(FrameError::Protocol("reserved bits set"));
            }
            let op = head[0] & 0x0F;
            if head[1] & 0x80 == 0 {
                return Err(FrameError::Protocol("client frames must be masked"));
            }
            let len = match head[1] & 0x7F {
                126 => {
                    let mut b = [0u8; 2];
                    r.read_exact(&mut b).await?;
                    u16::from_be_bytes(b) as u64
                }
                127 => {
                    let mut b = [0u8; 8];
                    r.read_exact(&mut b).await?;
                    let n = u64::from_be_bytes(b);
                    // §5.2: "the most significant bit MUST be 0".
                    if n >> 63 != 0 {
                        return Err(FrameError::Protocol("a 64-bit length with its top bit set"));
                    }
                    n
                }
                n => u64::from(n),
            };
            let control = op & 0x8 != 0;
            if control && (len > 125 || !fin) {
                return Err(FrameError::Protocol("bad control frame"));
            }
            let have = self.partial.as_ref().map_or(0, |(_, b)| b.len());
            let total = u64::try_from(have).ok().and_then(|h| h.checked_add(len));
            let limit = u64::try_from(self.max_message).unwrap_or(u64::MAX);
            if !control && total.is_none_or(|t| t > limit) {
                return Err(FrameError::TooBig);
            }
            // Within the limit (or a control frame of at most 125 bytes).
            let len = usize::try_from(len).map_err(|_| FrameError::TooBig)?;
            let mut mask = [0u8; 4];
            r.read_exact(&mut mask).await?;
            let mut payload = vec![0u8; len];
            r.read_exact(&mut payload).await?;
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i & 3];
            }
            match op {
                OP_PING => return Ok(Incoming::Ping(Bytes::from(payload))),
                OP_PONG => return Ok(Incoming::Pong),
                OP_CLOSE => return close_payload(&payload),
                OP_TEXT | OP_BINARY => {
                    if self.partial.is_some() {
                        return Err(FrameError::Protocol("new message inside a fragmented one"));
                    }
                    if fin {
                        return finish(op, payload);
                    }
                    self.partial = Some((op, payload));
                }
                OP_CONT => {
                    let Some((first, mut buf)) = self.partial.take() else {
                        return Err(FrameError::Protocol("continuation without a message"));
                    };
                    buf.extend_from_slice(&payload);
                    if fin {
                        return finish(first, buf);
                    }
                    self.partial = Some((first, buf));
                }
                _ => return Err(FrameError::Protocol("unknown opcode")),
            }
        }
    }
}

/// A close frame's body (RFC 6455 §5.5.1): empty, or a valid code followed
/// by a UTF-8 reason.
fn close_payload(payload: &[u8]) -> Result<Incoming, FrameError> {
    match payload {
        [] => Ok(Incoming::Close(None)),
        [_] => Err(FrameError::Protocol("a close frame of one byte")),
        [a, b, reason @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !valid_close_code(code) {
                return Err(FrameError::Protocol("a close code that may not be sent"));
            }
            std::str::from_utf8(reason).map_err(|_| FrameError::BadUtf8)?;
            Ok(Incoming::Close(Some(code)))
        }
    }
}

fn finish(op: u8, payload: Vec<u8>) -> Result<Incoming, FrameError> {
    if op == OP_BINARY {
        return Ok(Incoming::Binary(payload));
    }
    String::from_utf8(payload)
        .map(Incoming::Text)
        .map_err(|_| FrameError::BadUtf8)
}

/// Appends one unmasked server frame to `buf`.
pub fn encode_head(buf: &mut Vec<u8>, op: u8, len: usize) {
    buf.push(0x80 | op);
    if len < 126 {
        buf.push(len as u8);
    } else if len <= u16::MAX as usize {
        buf.push(126);
        buf.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        buf.push(127);
        buf.extend_from_slice(&(len as u64).to_be_bytes());
    }
}

/// One unmasked server frame: the header, then the `len` bytes `body` adds.
pub fn encode(op: u8, len: usize, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut buf = Vec::with_capacity(len + 10);
    encode_head(&mut buf, op, len);
    body(&mut buf);
    buf
}

/// A close frame: the code, then at most 120 bytes of reason.
pub fn encode_close(code: u16, reason: &str) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(120)];
    encode(OP_CLOSE, 2 + reason.len(), |b| {
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(reason);
    })
}

pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    op: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    w.write_all(&encode(op, payload.len(), |b| b.extend_from_slice(payload)))
        .await?;
    w.flush().await
}

pub async fn write_close<W: AsyncWrite + Unpin>(
    w: &mut W,
    code: u16,
    reason: &str,
) -> std::io::Result<()> {
    w.write_all(&encode_close(code, reason)).await?;
    w.flush().await
}

/// `Sec-WebSocket-Accept` for a client key.
pub fn accept_key(key: &str) -> String {
    use base64::Engine;
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_frame(fin: bool, op: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut v = vec![if fin { 0x80 | op } else { op }];
        let n = payload.len();
        if n < 126 {
            v.push(0x80 | n as u8);
        } else {
            v.push(0x80 | 126);
            v.extend_from_slice(&(n as u16).to_be_bytes());
        }
        v.extend_from_slice(&mask);
        v.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
        v
    }

    #[tokio::test]
    async fn reads_fragmented_text_with_a_ping_in_between() {
        let mut wire = client_frame(false, OP_TEXT, b"hel");
        wire.extend(client_frame(true, OP_PING, b"p"));
        wire.extend(client_frame(true, OP_CONT, b"lo"));
        let mut r = Reader::new(16);
        let mut src = &wire[..];
        assert_eq!(
            r.read(&mut src).await.unwrap(),
            Incoming::Ping(Bytes::from_static(b"p"))
        );
        assert_eq!(
            r.read(&mut src).await.unwrap(),
            Incoming::Text("hello".into())
        );
    }

    #[tokio::test]
    async fn refuses_oversize_unmasked_and_bad_utf8() {
        let mut r = Reader::new(4);
        assert!(matches!(
            r.read(&mut &client_frame(true, OP_TEXT, b"12345")[..])
                .await,
            Err(FrameError::TooBig)
        ));
        assert!(r
            .read(&mut &client_frame(true, OP_TEXT, b"1234")[..])
            .await
            .is_ok());
        let unmasked = [0x81u8, 0x01, b'a'];
        assert!(matches!(
            r.read(&mut &unmasked[..]).await,
            Err(FrameError::Protocol(_))
        ));
        assert!(matches!(
            r.read(&mut &client_frame(true, OP_TEXT, &[0xff])[..]).await,
            Err(FrameError::BadUtf8)
        ));
    }

    fn header_64(fin_op: u8, len: u64) -> Vec<u8> {
        let mut v = vec![fin_op, 0x80 | 127];
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(&[1, 2, 3, 4]);
        v
    }

    /// Lengths that overflow a sum, or a usize, are refused without a panic.
    #[tokio::test]
    async fn huge_declared_lengths_are_refused_before_anything_is_allocated() {
        for len in [u64::MAX - 2, u64::MAX, 1 << 63, (1 << 63) - 1, 1 << 40] {
            let mut wire = client_frame(false, OP_TEXT, b"abc");
            wire.extend(header_64(0x80 | OP_CONT, len));
            let mut r = Reader::new(16 * 1024);
            let got = r.read(&mut &wire[..]).await;
            let top_bit = len >> 63 != 0;
            assert!(
                matches!(
                    (&got, top_bit),
                    (Err(FrameError::Protocol(_)), true) | (Err(FrameError::TooBig), false)
                ),
                "{len}: {got:?}"
            );
            // Not only after a fragment: as a first frame too.
            let got = Reader::new(16).read(&mut &header_64(0x81, len)[..]).await;
            assert!(got.is_err(), "{len}");
        }
    }

    #[tokio::test]
    async fn close_frames_are_validated() {
        let read = |payload: Vec<u8>| async move {
            Reader::new(16)
                .read(&mut &client_frame(true, OP_CLOSE, &payload)[..])
                .await
        };
        assert_eq!(read(vec![]).await.unwrap(), Incoming::Close(None));
        for ok in [1000u16, 1001, 1003, 1007, 1011, 1014, 3000, 4408, 4999] {
            let mut p = ok.to_be_bytes().to_vec();
            p.extend_from_slice("bye ✓".as_bytes());
            assert_eq!(read(p).await.unwrap(), Incoming::Close(Some(ok)), "{ok}");
        }
        assert!(matches!(read(vec![3]).await, Err(FrameError::Protocol(_))));
        for bad in [
            0u16, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            let got = read(bad.to_be_bytes().to_vec()).await;
            assert!(
                matches!(got, Err(FrameError::Protocol(_))),
                "{bad}: {got:?}"
            );
        }
        let mut p = 1000u16.to_be_bytes().to_vec();
        p.extend_from_slice(&[0xce, 0xba, 0xe1, 0xbd]);
        assert!(matches!(read(p).await, Err(FrameError::BadUtf8)));
    }

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
