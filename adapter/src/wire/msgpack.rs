//! Reading and writing MessagePack by hand, where serde would copy or decode what needs neither:
//! a cursor that walks a value without decoding it, and a writer of raw pairs.

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::WireError;

/// How deep a value read from a peer (socket data, a room) may nest. rmpv's own limit (1024)
/// takes more than a 2 MiB thread stack in a debug build; data this deep is a hostile peer, not
/// an application.
pub(super) const MAX_DEPTH: usize = 256;

/// Writes MessagePack piece by piece, for messages built around already encoded parts.
pub(super) struct Writer(pub Vec<u8>);

impl Writer {
    pub(super) fn value<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), WireError> {
        v.serialize(&mut rmp_serde::Serializer::new(&mut self.0).with_struct_map())
            .map_err(WireError::Encode)
    }

    pub(super) fn map(&mut self, len: usize) -> Result<(), WireError> {
        rmp::encode::write_map_len(&mut self.0, container_len(len)?)
            .map(drop)
            .map_err(|e| WireError::Data(e.to_string()))
    }

    pub(super) fn array(&mut self, len: usize) -> Result<(), WireError> {
        rmp::encode::write_array_len(&mut self.0, container_len(len)?)
            .map(drop)
            .map_err(|e| WireError::Data(e.to_string()))
    }
}

pub(super) fn container_len(len: usize) -> Result<u32, WireError> {
    u32::try_from(len).map_err(|_| WireError::Data(format!("{len} elements are too many")))
}

/// Walks MessagePack by hand, to find where values start and end without decoding them.
pub(super) struct Cursor<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
}

impl<'a> Cursor<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|end| *end <= self.buf.len())
            .ok_or_else(|| WireError::Data("truncated MessagePack".into()))?;
        let bytes = &self.buf[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// A big-endian number of `width` bytes (at most 8).
    pub(super) fn be_u64(&mut self, width: usize) -> Result<u64, WireError> {
        Ok(self
            .take(width)?
            .iter()
            .fold(0u64, |n, b| n << 8 | u64::from(*b)))
    }

    pub(super) fn uint(&mut self, width: usize) -> Result<usize, WireError> {
        usize::try_from(self.be_u64(width)?)
            .map_err(|_| WireError::Data("MessagePack length too large".into()))
    }

    pub(super) fn peek_is_str(&self) -> Result<bool, WireError> {
        let byte = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| WireError::Data("truncated MessagePack".into()))?;
        Ok(matches!(byte, 0xa0..=0xbf | 0xd9..=0xdb))
    }

    /// `None` for nil, else what `read` reads.
    pub(super) fn nil_or<T>(
        &mut self,
        read: impl FnOnce(&mut Self) -> Result<T, WireError>,
    ) -> Result<Option<T>, WireError> {
        if self.buf.get(self.pos) == Some(&0xc0) {
            self.pos += 1;
            return Ok(None);
        }
        read(self).map(Some)
    }

    /// The value at the cursor, decoded (its extent is checked first, so no length in it can
    /// claim more than the message holds).
    pub(super) fn value(&mut self) -> Result<rmpv::Value, WireError> {
        let start = self.pos;
        self.skip()?;
        rmpv::decode::read_value_with_max_depth(&mut &self.buf[start..self.pos], MAX_DEPTH)
            .map_err(|e| WireError::Data(e.to_string()))
    }

    /// A room list: strings, or the numbers Node.js lets through; nil is no rooms.
    pub(super) fn rooms(&mut self) -> Result<Vec<String>, WireError> {
        let Some(len) = self.nil_or(Self::array_len)? else {
            return Ok(Vec::new());
        };
        let mut rooms = Vec::with_capacity(len.min(self.remaining()));
        for _ in 0..len {
            if self.peek_is_str()? {
                rooms.push(self.str()?.to_owned());
                continue;
            }
            rooms.push(room_name(self.value()?).map_err(WireError::Data)?);
        }
        Ok(rooms)
    }

    pub(super) fn str(&mut self) -> Result<&'a str, WireError> {
        let len = match self.take(1)?[0] {
            b @ 0xa0..=0xbf => usize::from(b & 0x1f),
            0xd9 => self.uint(1)?,
            0xda => self.uint(2)?,
            0xdb => self.uint(4)?,
            b => {
                return Err(WireError::Data(format!(
                    "expected a string, found 0x{b:02x}"
                )));
            }
        };
        std::str::from_utf8(self.take(len)?).map_err(|e| WireError::Data(e.to_string()))
    }

    pub(super) fn map_len(&mut self) -> Result<usize, WireError> {
        match self.take(1)?[0] {
            b @ 0x80..=0x8f => Ok(usize::from(b & 0x0f)),
            0xde => self.uint(2),
            0xdf => self.uint(4),
            b => Err(WireError::Data(format!("expected a map, found 0x{b:02x}"))),
        }
    }

    pub(super) fn array_len(&mut self) -> Result<usize, WireError> {
        match self.take(1)?[0] {
            b @ 0x90..=0x9f => Ok(usize::from(b & 0x0f)),
            0xdc => self.uint(2),
            0xdd => self.uint(4),
            b => Err(WireError::Data(format!(
                "expected an array, found 0x{b:02x}"
            ))),
        }
    }

    /// The value at the cursor if it is plain JSON: nil, booleans, integers, 64-bit floats,
    /// UTF-8 strings, arrays, maps with string keys, at most `depth` deep. `None` for anything
    /// else, or malformed, for the caller to decode the slow way.
    pub(super) fn json(&mut self, depth: usize) -> Option<serde_json::Value> {
        use serde_json::Value as Json;
        let depth = depth.checked_sub(1)?;
        let marker = *self.take(1).ok()?.first()?;
        Some(match marker {
            0x00..=0x7f => Json::from(marker),
            0xe0..=0xff => Json::from(marker as i8),
            0xc0 => Json::Null,
            0xc2 => Json::Bool(false),
            0xc3 => Json::Bool(true),
            0xcc..=0xcf => Json::from(self.be_u64(1 << (marker - 0xcc)).ok()?),
            0xd0..=0xd3 => {
                let width = 1 << (marker - 0xd0);
                let shift = 64 - 8 * width;
                Json::from((self.be_u64(width).ok()? << shift) as i64 >> shift)
            }
            0xcb => Json::from(f64::from_bits(self.be_u64(8).ok()?)),
            0xa0..=0xbf | 0xd9..=0xdb => {
                self.pos -= 1;
                Json::String(self.str().ok()?.to_owned())
            }
            0x90..=0x9f | 0xdc | 0xdd => {
                self.pos -= 1;
                let len = self.array_len().ok()?;
                let mut items = Vec::with_capacity(len.min(self.remaining()));
                for _ in 0..len {
                    items.push(self.json(depth)?);
                }
                Json::Array(items)
            }
            0x80..=0x8f | 0xde | 0xdf => {
                self.pos -= 1;
                let mut map = serde_json::Map::new();
                for _ in 0..self.map_len().ok()? {
                    if !self.peek_is_str().ok()? {
                        return None;
                    }
                    let key = self.str().ok()?.to_owned();
                    map.insert(key, self.json(depth)?);
                }
                Json::Object(map)
            }
            _ => return None,
        })
    }

    /// Steps over one value, nested ones included; a loop, not recursion, so that no nesting
    /// depth can exhaust the stack.
    pub(super) fn skip(&mut self) -> Result<(), WireError> {
        let mut values = 1usize;
        while values > 0 {
            values -= 1;
            let (payload, nested) = match self.take(1)?[0] {
                0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (0, 0),
                b @ 0x80..=0x8f => (0, 2 * usize::from(b & 0x0f)),
                b @ 0x90..=0x9f => (0, usize::from(b & 0x0f)),
                b @ 0xa0..=0xbf => (usize::from(b & 0x1f), 0),
                0xcc | 0xd0 => (1, 0),
                0xcd | 0xd1 => (2, 0),
                0xca | 0xce | 0xd2 => (4, 0),
                0xcb | 0xcf | 0xd3 => (8, 0),
                0xc4 | 0xd9 => (self.uint(1)?, 0),
                0xc5 | 0xda => (self.uint(2)?, 0),
                0xc6 | 0xdb => (self.uint(4)?, 0),
                0xd4 => (2, 0),
                0xd5 => (3, 0),
                0xd6 => (5, 0),
                0xd7 => (9, 0),
                0xd8 => (17, 0),
                0xc7 => (self.uint(1)? + 1, 0),
                0xc8 => (self.uint(2)? + 1, 0),
                0xc9 => (self.uint(4)? + 1, 0),
                0xdc => (0, self.uint(2)?),
                0xdd => (0, self.uint(4)?),
                0xde => (0, 2 * self.uint(2)?),
                0xdf => (0, 2 * self.uint(4)?),
                0xc1 => return Err(WireError::Data("reserved MessagePack marker 0xc1".into())),
            };
            self.take(payload)?;
            values = values
                .checked_add(nested)
                .filter(|n| *n <= self.remaining())
                .ok_or_else(|| {
                    WireError::Data("MessagePack container larger than its message".into())
                })?;
        }
        Ok(())
    }
}

/// Rooms are strings, but Node.js lets numbers through: accept both.
pub(super) fn room_name(value: rmpv::Value) -> Result<String, String> {
    match value {
        rmpv::Value::String(s) => s.into_str().ok_or_else(|| "room is not UTF-8".to_string()),
        rmpv::Value::Integer(n) => Ok(n.to_string()),
        rmpv::Value::F64(n) => Ok(n.to_string()),
        other => Err(format!("invalid room {other}")),
    }
}

/// A room list, for serde.
pub(super) fn room_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let values = Option::<Vec<rmpv::Value>>::deserialize(d)?.unwrap_or_default();
    values
        .into_iter()
        .map(|v| room_name(v).map_err(serde::de::Error::custom))
        .collect()
}
