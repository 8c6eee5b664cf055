//! A minimal keep-alive HTTP/1.1 client: one request at a time on one
//! connection, `Content-Length` or chunked answers.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const MAX_BODY: usize = 4 << 20;

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

pub struct HttpConn {
    addr: SocketAddr,
    io: BufReader<TcpStream>,
    req: Vec<u8>,
}

pub struct Resp {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpConn {
    pub async fn connect(addr: SocketAddr) -> io::Result<HttpConn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Ok(HttpConn {
            addr,
            io: BufReader::with_capacity(16 << 10, s),
            req: Vec::with_capacity(1024),
        })
    }

    /// Sends one request and reads its answer. `auth` becomes a Bearer token.
    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        auth: Option<&str>,
        body: Option<&[u8]>,
    ) -> io::Result<Resp> {
        use std::io::Write;
        self.req.clear();
        write!(
            self.req,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: keep-alive\r\n",
            self.addr
        )?;
        if let Some(t) = auth {
            write!(self.req, "Authorization: Bearer {t}\r\n")?;
        }
        if let Some(b) = body {
            write!(
                self.req,
                "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                b.len()
            )?;
            self.req.extend_from_slice(b);
        } else {
            self.req.extend_from_slice(b"\r\n");
        }
        self.io.get_mut().write_all(&self.req).await?;
        self.read_response().await
    }

    async fn read_response(&mut self) -> io::Result<Resp> {
        let mut line = String::new();
        let mut status = 0u16;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut first = true;
        let mut total = 0usize;
        loop {
            line.clear();
            let n = self.io.read_line(&mut line).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the answer",
                ));
            }
            total += n;
            if total > 64 << 10 {
                return Err(bad("answer headers too long"));
            }
            let l = line.trim_end();
            if first {
                first = false;
                status = l
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| bad(format!("bad status line {l:?}")))?;
                continue;
            }
            if l.is_empty() {
                if status == 100 {
                    first = true;
                    continue;
                }
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let k = k.trim();
                if k.eq_ignore_ascii_case("content-length") {
                    length = Some(v.trim().parse().map_err(|_| bad("bad content-length"))?);
                } else if k.eq_ignore_ascii_case("transfer-encoding")
                    && v.to_ascii_lowercase().contains("chunked")
                {
                    chunked = true;
                }
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                if self.io.read_line(&mut line).await? == 0 {
                    return Err(bad("closed inside a chunked body"));
                }
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| bad("bad chunk size"))?;
                if body.len() + size > MAX_BODY {
                    return Err(bad("answer body too large"));
                }
                if size == 0 {
                    // trailers until the empty line
                    loop {
                        line.clear();
                        if self.io.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                            break;
                        }
                    }
                    break;
                }
                let at = body.len();
                body.resize(at + size, 0);
                self.io.read_exact(&mut body[at..]).await?;
                let mut crlf = [0u8; 2];
                self.io.read_exact(&mut crlf).await?;
            }
        } else if let Some(n) = length {
            if n > MAX_BODY {
                return Err(bad("answer body too large"));
            }
            body.resize(n, 0);
            self.io.read_exact(&mut body).await?;
        } else if status != 204 && status != 304 {
            return Err(bad("answer without a length (not supported)"));
        }
        Ok(Resp { status, body })
    }
}

/// One request on a fresh connection.
pub async fn once(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<&[u8]>,
) -> io::Result<Resp> {
    let mut c = HttpConn::connect(addr).await?;
    c.request(method, path, auth, body).await
}
