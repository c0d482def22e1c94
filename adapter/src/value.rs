//! Conversions between socketioxide's parsed packet data and the dynamic MessagePack values of
//! the wire format.
//!
//! socketioxide keeps an event as the parser's own encoding of `[event, ...args]` (JSON text with
//! binary attachments for the default parser). The Node.js adapter carries the same array as a
//! MessagePack value with binaries inline. Going through the namespace's parser keeps binary
//! attachments intact in both directions and works with any socketioxide parser.

use std::fmt;

use serde::{
    Deserialize, Deserializer, Serialize, Serializer,
    de::{SeqAccess, Visitor},
    ser::SerializeTuple,
};
use socketioxide_core::{Value, parser::Parse};
use socketioxide_parser_common::CommonParser;
use socketioxide_parser_msgpack::MsgPackParser;

use crate::error::WireError;

/// A list of values that serde (and so the socketioxide parsers) sees as a tuple: each element is
/// one argument rather than the whole list being a single argument.
struct Args(Vec<rmpv::Value>);

impl Serialize for Args {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut tuple = s.serialize_tuple(self.0.len())?;
        for v in &self.0 {
            tuple.serialize_element(v)?;
        }
        tuple.end()
    }
}

impl<'de> Deserialize<'de> for Args {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ArgsVisitor;
        impl<'de> Visitor<'de> for ArgsVisitor {
            type Value = Args;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of arguments")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Args, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(v) = seq.next_element()? {
                    out.push(v);
                }
                Ok(Args(out))
            }
        }
        d.deserialize_tuple(usize::MAX, ArgsVisitor)
    }
}

/// The socketioxide parser a namespace uses, as a plain value that can move into tasks (the
/// adapter only gets a parser borrowed from socketioxide).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Common,
    MsgPack,
}

impl Codec {
    /// Tells the parser apart by what it encodes to.
    pub fn of(parser: impl Parse) -> Self {
        match parser.encode_default(&()) {
            Ok(Value::Bytes(_)) => Self::MsgPack,
            _ => Self::Common,
        }
    }

    /// `[event, ...args]` (or the arguments of an ack) as a MessagePack array.
    pub fn wire_of(self, value: &Value) -> Result<rmpv::Value, WireError> {
        match self {
            Self::Common => args_of(CommonParser, value),
            Self::MsgPack => args_of(MsgPackParser, value),
        }
    }

    /// A MessagePack array back into the parser's representation.
    pub fn value_of(self, data: rmpv::Value) -> Result<Value, WireError> {
        let items = match data {
            rmpv::Value::Array(items) => items,
            rmpv::Value::Nil => Vec::new(),
            single => vec![single],
        };
        let encoded = match self {
            Self::Common => CommonParser.encode_value(&Args(items), None),
            Self::MsgPack => MsgPackParser.encode_value(&Args(items), None),
        };
        encoded.map_err(|e| WireError::Data(e.to_string()))
    }
}

fn args_of(parser: impl Parse, value: &Value) -> Result<rmpv::Value, WireError> {
    let mut value = value.clone();
    let Args(items) = parser
        .decode_value(&mut value, false)
        .map_err(|e| WireError::Data(e.to_string()))?;
    Ok(rmpv::Value::Array(items))
}

/// Dynamic data from the wire as JSON. Binaries become arrays of bytes.
pub(crate) fn wire_to_json(v: &rmpv::Value) -> Result<serde_json::Value, WireError> {
    serde_json::to_value(v).map_err(WireError::Json)
}

/// JSON data for the wire.
pub(crate) fn json_to_wire(v: &serde_json::Value) -> rmpv::Value {
    // Infallible for JSON values: every JSON value has a MessagePack counterpart.
    rmpv::ext::to_value(v).unwrap_or(rmpv::Value::Nil)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use socketioxide_core::Str;

    #[test]
    fn tells_parsers_apart() {
        assert_eq!(Codec::of(CommonParser), Codec::Common);
        assert_eq!(Codec::of(MsgPackParser), Codec::MsgPack);
    }

    #[test]
    fn event_with_binary_round_trips_through_both_parsers() {
        let args = (serde_json::json!({"a": 1}), Bytes::from_static(&[1, 2]));
        let expected = rmpv::Value::Array(vec![
            "ev".into(),
            rmpv::Value::Map(vec![("a".into(), 1.into())]),
            rmpv::Value::Binary(vec![1, 2]),
        ]);
        let common = CommonParser.encode_value(&args, Some("ev")).unwrap();
        let msgpack = MsgPackParser.encode_value(&args, Some("ev")).unwrap();
        for (codec, value) in [(Codec::Common, common), (Codec::MsgPack, msgpack)] {
            let wire = codec.wire_of(&value).unwrap();
            assert_eq!(wire, expected, "{codec:?}");
            assert_eq!(codec.value_of(wire).unwrap(), value, "{codec:?}");
        }
    }

    #[test]
    fn plain_event_is_the_json_array() {
        let wire = rmpv::Value::Array(vec!["hello".into(), "world".into()]);
        let value = Codec::Common.value_of(wire).unwrap();
        assert_eq!(
            value,
            Value::Str(Str::from(r#"["hello","world"]"#.to_string()), None)
        );
    }
}
