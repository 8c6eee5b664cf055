//! A connection's writer task: what the outbox could not write at once.

use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::outbox::{Outbox, Step};
use crate::app::App;
use crate::protocol::CloseCode;

/// A direct connection's writer: sends what its pushes could not write at
/// once, whenever the socket can take more. Returns the close code.
pub(super) async fn send_loop(app: &App, out: &Outbox) -> Option<CloseCode> {
    let stall = Duration::from_millis(app.config.heartbeat * 2500);
    loop {
        out.ready().await;
        match out.send_waiting() {
            Step::Idle => {}
            Step::Blocked => {
                let socket = out.socket()?;
                // Boxed: a timer only while blocked, none on an idle connection.
                match Box::pin(tokio::time::timeout(stall, socket.writable())).await {
                    Ok(Ok(())) => {}
                    _ => return None,
                }
            }
            Step::Done(code) => return Some(code),
            Step::Failed => return None,
        }
    }
}

/// Any other connection's writer: sends everything the outbox holds, as one
/// write for all that waits, until it says close. Returns the close code.
pub(super) async fn write_loop<W: AsyncWrite + Unpin>(
    app: &App,
    out: &Outbox,
    wr: &mut W,
) -> Option<CloseCode> {
    let stall = Duration::from_millis(app.config.heartbeat * 2500);
    let mut buf = Vec::new();
    loop {
        out.ready().await;
        let d = out.take();
        buf.clear();
        for f in &d.frames {
            buf.extend_from_slice(f);
        }
        // Boxed: the sending state only lives while sending.
        let res = Box::pin(tokio::time::timeout(stall, async {
            wr.write_all(&buf).await?;
            wr.flush().await?;
            if d.close.is_some() {
                wr.shutdown().await?;
            }
            std::io::Result::Ok(())
        }))
        .await;
        // Keep no large buffer around on an idle connection.
        if buf.capacity() > 4096 {
            buf = Vec::new();
        }
        if !matches!(res, Ok(Ok(()))) {
            return None;
        }
        if let Some((code, _)) = d.close {
            return Some(code);
        }
    }
}
