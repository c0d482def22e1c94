//! The client side of WebSocket (RFC 6455), as little of it as a load generator needs: the
//! upgrade request, decoding every complete frame of a read buffer in place, and masked frames
//! out. A general-purpose client copies and allocates per frame; at a million deliveries a
//! second on a shared two-core machine that would measure the client instead of the servers.

use anyhow::{Context, bail};
use bytes::{BufMut, BytesMut};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Largest message accepted; anything bigger is a broken peer.
const MAX_MESSAGE: usize = 16 << 20;

/// Sends the upgrade request for `path` and reads the answer. Bytes that follow it (the first
/// frames) stay in `buf`.
pub async fn handshake(
    stream: &mut TcpStream,
    host: &str,
    path: &str,
    buf: &mut BytesMut,
) -> anyhow::Result<()> {
    // The key must be 16 bytes in base64 (this is RFC 6455's example); the accept hash is not
    // checked: a `101` from the server under test is all the generator needs to know.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let end = loop {
        if let Some(end) = memchr::memmem::find(buf, b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() > 16 << 10 {
            bail!("upgrade response too long");
        }
        if stream
            .read_buf(buf)
            .await
            .context("reading upgrade response")?
            == 0
        {
            bail!("connection closed during the upgrade");
        }
    };
    let head = buf.split_to(end);
    if !head.starts_with(b"HTTP/1.1 101") {
        let line = head[..].split(|&b| b == b'\r').next().unwrap_or_default();
        bail!("upgrade refused: {}", String::from_utf8_lossy(line));
    }
    Ok(())
}

/// A complete message from the server.
#[derive(Debug, PartialEq, Eq)]
pub enum Message<'a> {
    Text(&'a [u8]),
    Ping(&'a [u8]),
    Close,
}

/// Decodes frames, joining fragmented text messages.
#[derive(Default)]
pub struct Decoder {
    fragments: Option<Vec<u8>>,
}

impl Decoder {
    /// Hands every complete message at the start of `buf` to `on_message` and returns how many
    /// bytes they took; an incomplete frame at the end waits for the next read.
    pub fn decode(
        &mut self,
        buf: &[u8],
        mut on_message: impl FnMut(Message<'_>),
    ) -> anyhow::Result<usize> {
        let mut at = 0;
        while let Some((head, len)) = header(&buf[at..])? {
            let first = buf[at];
            let Some(payload) = buf.get(at + head..at + head + len) else {
                break;
            };
            at += head + len;
            let (fin, opcode) = (first & 0x80 != 0, first & 0x0F);
            match opcode {
                OP_TEXT if fin => on_message(Message::Text(payload)),
                OP_TEXT => self.fragments = Some(payload.to_vec()),
                OP_CONTINUATION => {
                    let Some(message) = self.fragments.as_mut() else {
                        bail!("continuation frame without a first fragment");
                    };
                    message.extend_from_slice(payload);
                    if message.len() > MAX_MESSAGE {
                        bail!("fragmented message over {MAX_MESSAGE} bytes");
                    }
                    if fin {
                        let message = self.fragments.take().unwrap_or_default();
                        on_message(Message::Text(&message));
                    }
                }
                OP_PING => on_message(Message::Ping(payload)),
                OP_CLOSE => on_message(Message::Close),
                OP_BINARY | OP_PONG => {}
                other => bail!("unknown opcode {other:#x}"),
            }
        }
        Ok(at)
    }
}

/// The header length and payload length of the frame starting `buf`, once the header is there.
fn header(buf: &[u8]) -> anyhow::Result<Option<(usize, usize)>> {
    let [_, second, ..] = *buf else {
        return Ok(None);
    };
    if second & 0x80 != 0 {
        bail!("the server masked a frame");
    }
    let (header, len) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(b) => (4, u16::from_be_bytes([b[0], b[1]]) as usize),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (10, u64::from_be_bytes(b.try_into()?) as usize),
            None => return Ok(None),
        },
        n => (2, n as usize),
    };
    if len > MAX_MESSAGE {
        bail!("frame of {len} bytes");
    }
    Ok(Some((header, len)))
}

/// Appends a masked text frame.
pub fn text(out: &mut BytesMut, payload: &[u8], mask: [u8; 4]) {
    frame(out, OP_TEXT, payload, mask);
}

/// Appends a masked pong answering a ping with `payload`.
pub fn pong(out: &mut BytesMut, payload: &[u8], mask: [u8; 4]) {
    frame(out, OP_PONG, payload, mask);
}

fn frame(out: &mut BytesMut, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.reserve(payload.len() + 14);
    out.put_u8(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.put_u8(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.put_u8(0x80 | 126);
            out.put_u16(n as u16);
        }
        n => {
            out.put_u8(0x80 | 127);
            out.put_u64(n as u64);
        }
    }
    out.put_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![u8::from(fin) << 7 | opcode];
        match payload.len() {
            n if n < 126 => out.push(n as u8),
            n => {
                out.push(126);
                out.extend((n as u16).to_be_bytes());
            }
        }
        out.extend_from_slice(payload);
        out
    }

    fn decode_all(decoder: &mut Decoder, buf: &[u8]) -> (Vec<String>, usize) {
        let mut seen = Vec::new();
        let used = decoder
            .decode(buf, |m| seen.push(format!("{m:?}")))
            .unwrap();
        (seen, used)
    }

    #[test]
    fn decodes_every_complete_frame_and_keeps_the_rest() {
        let long = vec![b'x'; 300];
        let mut buf = server_frame(true, OP_TEXT, b"2");
        buf.extend(server_frame(true, OP_TEXT, &long));
        let complete = buf.len();
        buf.extend(&server_frame(true, OP_TEXT, b"partial")[..4]);
        let (seen, used) = decode_all(&mut Decoder::default(), &buf);
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0], format!("{:?}", Message::Text(b"2")));
        assert_eq!(used, complete);
    }

    #[test]
    fn joins_fragments() {
        let mut buf = server_frame(false, OP_TEXT, b"42[\"m\",");
        buf.extend(server_frame(true, OP_PING, b"p"));
        buf.extend(server_frame(true, OP_CONTINUATION, b"1]"));
        let (seen, _) = decode_all(&mut Decoder::default(), &buf);
        assert_eq!(
            seen,
            [
                format!("{:?}", Message::Ping(b"p")),
                format!("{:?}", Message::Text(b"42[\"m\",1]"))
            ]
        );
    }

    #[test]
    fn refuses_masked_server_frames() {
        let buf = [0x81, 0x81, 1, 2, 3, 4, b'x'];
        assert!(Decoder::default().decode(&buf, |_| {}).is_err());
    }

    #[test]
    fn masks_outgoing_frames() {
        let mut out = BytesMut::new();
        text(&mut out, b"abcde", [1, 2, 3, 4]);
        assert_eq!(&out[..2], &[0x81, 0x85]);
        let unmasked: Vec<u8> = out[6..]
            .iter()
            .zip([1u8, 2, 3, 4].iter().cycle())
            .map(|(b, m)| b ^ m)
            .collect();
        assert_eq!(unmasked, b"abcde");
        let mut out = BytesMut::new();
        text(&mut out, &[b'y'; 200], [0; 4]);
        assert_eq!(&out[..4], &[0x81, 0x80 | 126, 0, 200]);
    }
}
