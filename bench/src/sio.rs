//! Engine.IO v4 / Socket.IO v5 packets on namespace `/`, read without parsing the JSON they
//! carry, and the generator's messages.
//!
//! Every message the generator sends carries a tag `~step.sender.seq.micros~` inside a JSON
//! string: the apps broadcast it back unchanged (the chat server inside its `text`), whatever
//! order the server writes the object's keys in, so a receiver finds it with one `memchr`.

use std::io::Write;

/// What a text frame holds.
#[derive(Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    /// Engine.IO open (`0{…}`).
    Open,
    /// Engine.IO ping: answer with a pong.
    Ping,
    /// Namespace connected (`40{"sid":…}`).
    Connected,
    /// Namespace refused (`44{…}`).
    ConnectError(&'a [u8]),
    /// Engine.IO close or namespace disconnect.
    Disconnect,
    /// An event: its name and everything after it in the argument array.
    Event {
        name: &'a [u8],
        rest: &'a [u8],
    },
    /// An acknowledgement: its id and its argument array.
    Ack {
        id: u64,
        args: &'a [u8],
    },
    Other,
}

pub fn classify(text: &[u8]) -> Packet<'_> {
    match text {
        [b'0', ..] => Packet::Open,
        [b'2'] => Packet::Ping,
        [b'1', ..] | [b'4', b'1', ..] => Packet::Disconnect,
        [b'4', b'0', ..] => Packet::Connected,
        [b'4', b'4', rest @ ..] => Packet::ConnectError(rest),
        [b'4', b'2', rest @ ..] => event(rest).unwrap_or(Packet::Other),
        [b'4', b'3', rest @ ..] => {
            let (id, args) = number(rest);
            id.map_or(Packet::Other, |id| Packet::Ack { id, args })
        }
        _ => Packet::Other,
    }
}

/// `[id]["name",…]`: a server event may ask for an ack; the apps under test never do.
fn event(rest: &[u8]) -> Option<Packet<'_>> {
    let (_, rest) = number(rest);
    let rest = rest.strip_prefix(b"[\"")?;
    let end = memchr::memchr(b'"', rest)?;
    Some(Packet::Event {
        name: &rest[..end],
        rest: &rest[end + 1..],
    })
}

/// A leading decimal number, if any, and what follows it.
fn number(bytes: &[u8]) -> (Option<u64>, &[u8]) {
    let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return (None, &bytes[digits..]);
    }
    let n = bytes[..digits]
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
    (Some(n), &bytes[digits..])
}

/// Who sent a message, when, and in which step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag {
    pub step: u32,
    pub sender: u32,
    pub seq: u64,
    /// Microseconds on the generator's clock ([`crate::stats::now_us`]).
    pub sent_us: u64,
}

impl Tag {
    /// Finds the tag in an event's arguments.
    pub fn find(args: &[u8]) -> Option<Self> {
        let start = memchr::memchr(b'~', args)? + 1;
        let mut fields = [0u64; 4];
        let mut rest = &args[start..];
        for (i, field) in fields.iter_mut().enumerate() {
            let (n, after) = number(rest);
            *field = n?;
            let sep = if i == 3 { b'~' } else { b'.' };
            rest = after.strip_prefix(&[sep])?;
        }
        let [step, sender, seq, sent_us] = fields;
        Some(Self {
            step: u32::try_from(step).ok()?,
            sender: u32::try_from(sender).ok()?,
            seq,
            sent_us,
        })
    }

    fn write(&self, out: &mut Vec<u8>, pad: usize) {
        let mut n = itoa::Buffer::new();
        out.push(b'~');
        out.extend_from_slice(n.format(self.step).as_bytes());
        out.push(b'.');
        out.extend_from_slice(n.format(self.sender).as_bytes());
        out.push(b'.');
        out.extend_from_slice(n.format(self.seq).as_bytes());
        out.push(b'.');
        out.extend_from_slice(n.format(self.sent_us).as_bytes());
        out.push(b'~');
        out.resize(out.len() + pad, b'x');
    }
}

/// What a sender emits.
#[derive(Debug, Clone)]
pub enum Emit {
    /// The tiny app's `m` to a room: `42["m",{"r":room,"b":tag}]`.
    Tiny { room: String },
    /// The chat server's `message` with an ack: `42<id>["message",{"room":…,"text":tag}]`.
    Chat { room: String },
}

impl Emit {
    /// Whether the message asks for an ack.
    pub fn is_acked(&self) -> bool {
        matches!(self, Self::Chat { .. })
    }

    /// Writes the Socket.IO packet of one message; `ack` is the ack id the chat message asks for.
    pub fn write(&self, out: &mut Vec<u8>, tag: Tag, pad: usize, ack: u64) {
        match self {
            Self::Tiny { room } => {
                out.extend_from_slice(b"42[\"m\",{\"r\":\"");
                out.extend_from_slice(room.as_bytes());
                out.extend_from_slice(b"\",\"b\":\"");
            }
            Self::Chat { room } => {
                out.extend_from_slice(b"42");
                out.extend_from_slice(itoa::Buffer::new().format(ack).as_bytes());
                out.extend_from_slice(b"[\"message\",{\"room\":\"");
                out.extend_from_slice(room.as_bytes());
                out.extend_from_slice(b"\",\"text\":\"");
            }
        }
        tag.write(out, pad);
        out.extend_from_slice(b"\"}]");
    }
}

/// `40{auth}`: connect to `/`.
pub fn connect(auth: &str) -> Vec<u8> {
    format!("40{auth}").into_bytes()
}

/// `42<id>["event",args…]`: an event asking for an ack; `args` is JSON without brackets.
pub fn request(out: &mut Vec<u8>, id: u64, event: &str, args: Option<&str>) {
    // Writing into a Vec cannot fail.
    let _ = match args {
        Some(args) => write!(out, "42{id}[\"{event}\",{args}]"),
        None => write!(out, "42{id}[\"{event}\"]"),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_packets() {
        assert_eq!(classify(b"2"), Packet::Ping);
        assert_eq!(classify(b"0{\"sid\":\"x\"}"), Packet::Open);
        assert_eq!(classify(b"40{\"sid\":\"a\"}"), Packet::Connected);
        assert_eq!(classify(b"41"), Packet::Disconnect);
        assert_eq!(
            classify(b"42[\"m\",{\"b\":1}]"),
            Packet::Event {
                name: b"m",
                rest: b",{\"b\":1}]"
            }
        );
        assert_eq!(
            classify(b"4312[1000]"),
            Packet::Ack {
                id: 12,
                args: b"[1000]"
            }
        );
        assert_eq!(classify(b"42"), Packet::Other);
        assert_eq!(classify(b"43[1]"), Packet::Other);
        assert_eq!(classify(b""), Packet::Other);
    }

    #[test]
    fn tags_survive_a_round_trip_in_any_key_order() {
        let tag = Tag {
            step: 3,
            sender: 41,
            seq: 7,
            sent_us: 123_456,
        };
        let mut out = Vec::new();
        Emit::Tiny { room: "r1".into() }.write(&mut out, tag, 4, 0);
        assert_eq!(
            out,
            b"42[\"m\",{\"r\":\"r1\",\"b\":\"~3.41.7.123456~xxxx\"}]"
        );
        assert_eq!(
            Tag::find(b",{\"b\":\"~3.41.7.123456~xxxx\",\"r\":\"r1\"}]"),
            Some(tag)
        );
        let mut out = Vec::new();
        Emit::Chat { room: "c".into() }.write(&mut out, tag, 0, 9);
        assert_eq!(
            out,
            b"429[\"message\",{\"room\":\"c\",\"text\":\"~3.41.7.123456~\"}]"
        );
    }

    #[test]
    fn malformed_tags_are_refused() {
        assert_eq!(Tag::find(b"~1.2.3~"), None);
        assert_eq!(Tag::find(b"~1.2.3.x~"), None);
        assert_eq!(Tag::find(b"no tag"), None);
        assert_eq!(Tag::find(b"~99999999999.1.1.1~"), None);
    }

    #[test]
    fn requests_and_connects() {
        let mut out = Vec::new();
        request(&mut out, 5, "join", Some("{\"room\":\"a\"}"));
        assert_eq!(out, b"425[\"join\",{\"room\":\"a\"}]");
        out.clear();
        request(&mut out, 6, "count", None);
        assert_eq!(out, b"426[\"count\"]");
        assert_eq!(connect("{}"), b"40{}");
    }
}
