//! A minimal WebSocket (RFC 6455) client: the upgrade handshake, masked
//! client frames, and a cancel-safe buffered frame reader (a partial frame
//! stays in the buffer when a read is abandoned by `select!`).

use std::io;
use std::net::SocketAddr;

use base64::Engine;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::Rng;

pub const OP_CONT: u8 = 0;
pub const OP_TEXT: u8 = 1;
pub const OP_BINARY: u8 = 2;
pub const OP_CLOSE: u8 = 8;
pub const OP_PING: u8 = 9;
pub const OP_PONG: u8 = 10;

/// Largest server frame accepted (a batch of many events fits easily).
const MAX_FRAME: usize = 16 << 20;
const MAX_HEAD: usize = 16 << 10;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// One frame found in the buffer: opcode, where the payload is, and how many
/// bytes it took on the wire (header included).
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    pub opcode: u8,
    pub start: usize,
    pub end: usize,
    pub wire: usize,
}

pub struct WsConn {
    stream: TcpStream,
    buf: Vec<u8>,
    pos: usize,
    rng: Rng,
}

fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

impl WsConn {
    /// Upgrades `stream` with `GET path`; fails unless the answer is a valid 101.
    pub async fn handshake(
        mut stream: TcpStream,
        host: SocketAddr,
        path: &str,
        seed: u64,
    ) -> io::Result<WsConn> {
        let mut rng = Rng::new(seed);
        let mut key_bytes = [0u8; 16];
        for c in key_bytes.chunks_mut(8) {
            let r = rng.next_u64().to_le_bytes();
            c.copy_from_slice(&r[..c.len()]);
        }
        let key = base64::engine::general_purpose::STANDARD.encode(key_bytes);
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await?;
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if buf.len() > MAX_HEAD {
                return Err(bad("upgrade answer headers too long"));
            }
            if buf.capacity() - buf.len() < 512 {
                buf.reserve(1024);
            }
            if stream.read_buf(&mut buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "closed during the upgrade",
                ));
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let status = head.split(' ').nth(1).unwrap_or("");
        if status != "101" {
            let first = head.lines().next().unwrap_or("").to_owned();
            return Err(bad(format!("upgrade refused: {first}")));
        }
        let want = accept_key(&key);
        let ok = head.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.trim().eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == want
            })
        });
        if !ok {
            return Err(bad("wrong Sec-WebSocket-Accept"));
        }
        buf.drain(..head_end);
        Ok(WsConn {
            stream,
            buf,
            pos: 0,
            rng,
        })
    }

    /// Reads more bytes into the buffer. Cancel-safe. Returns 0 at EOF.
    pub async fn fill(&mut self) -> io::Result<usize> {
        if self.pos > 0 {
            if self.pos == self.buf.len() {
                self.buf.clear();
            } else if self.pos > self.buf.capacity() / 2
                || self.buf.capacity() - self.buf.len() < 1024
            {
                self.buf.drain(..self.pos);
            } else {
                // keep the consumed prefix for now; there is room after it
                return self.read_more().await;
            }
            self.pos = 0;
        }
        self.read_more().await
    }

    async fn read_more(&mut self) -> io::Result<usize> {
        let spare = self.buf.capacity() - self.buf.len();
        if spare < 1024 {
            let grow = self.buf.capacity().clamp(4096, 1 << 20);
            self.buf.reserve(grow);
        }
        self.stream.read_buf(&mut self.buf).await
    }

    /// The next complete frame in the buffer, if any. Call [`WsConn::payload`]
    /// for its bytes, then [`WsConn::consume`].
    pub fn next_frame(&mut self) -> io::Result<Option<Frame>> {
        let b = &self.buf[self.pos..];
        if b.len() < 2 {
            return Ok(None);
        }
        let fin = b[0] & 0x80 != 0;
        let opcode = b[0] & 0x0f;
        let masked = b[1] & 0x80 != 0;
        let len7 = (b[1] & 0x7f) as usize;
        let (len, mut hl) = match len7 {
            126 => {
                if b.len() < 4 {
                    return Ok(None);
                }
                (u16::from_be_bytes([b[2], b[3]]) as usize, 4)
            }
            127 => {
                if b.len() < 10 {
                    return Ok(None);
                }
                let mut a = [0u8; 8];
                a.copy_from_slice(&b[2..10]);
                let n = u64::from_be_bytes(a);
                if n > MAX_FRAME as u64 {
                    return Err(bad("server frame too large"));
                }
                (n as usize, 10)
            }
            n => (n, 2),
        };
        if len > MAX_FRAME {
            return Err(bad("server frame too large"));
        }
        let mask = if masked {
            if b.len() < hl + 4 {
                return Ok(None);
            }
            let m = [b[hl], b[hl + 1], b[hl + 2], b[hl + 3]];
            hl += 4;
            Some(m)
        } else {
            None
        };
        if b.len() < hl + len {
            // make sure the buffer can hold the whole frame
            let want = self.pos + hl + len;
            if want > self.buf.capacity() {
                self.buf.reserve(want - self.buf.len());
            }
            return Ok(None);
        }
        if !fin || opcode == OP_CONT {
            return Err(bad("fragmented server frames are not supported"));
        }
        let start = self.pos + hl;
        let end = start + len;
        if let Some(m) = mask {
            for (i, x) in self.buf[start..end].iter_mut().enumerate() {
                *x ^= m[i % 4];
            }
        }
        Ok(Some(Frame {
            opcode,
            start,
            end,
            wire: hl + len,
        }))
    }

    pub fn payload(&self, f: &Frame) -> &[u8] {
        &self.buf[f.start..f.end]
    }

    pub fn consume(&mut self, f: &Frame) {
        self.pos = f.end;
    }

    /// Sends one masked frame.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        let mut f = Vec::with_capacity(payload.len() + 14);
        f.push(0x80 | opcode);
        let n = payload.len();
        if n < 126 {
            f.push(0x80 | n as u8);
        } else if n < 65536 {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
        let m = (self.rng.next_u64() as u32).to_be_bytes();
        f.extend_from_slice(&m);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        self.stream.write_all(&f).await
    }

    pub async fn send_text(&mut self, payload: &[u8]) -> io::Result<()> {
        self.send(OP_TEXT, payload).await
    }

    /// Sends a close frame with status 1000; errors are ignored (the peer
    /// may already be gone).
    pub async fn close(&mut self) {
        let _ = self.send(OP_CLOSE, &1000u16.to_be_bytes()).await;
        let _ = self.stream.shutdown().await;
    }
}
