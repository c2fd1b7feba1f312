//! Decoding record payloads as slices of the buffer they arrive in, instead of copies.
//!
//! A follower decodes every replicated entry out of one request buffer, and a fetch decodes
//! entries out of one read of a segment. With serde's plain `Bytes` support each key and value
//! became a fresh allocation and a copy, which a profile of the pipelined produce benchmark
//! found among its larger costs. Inside [`decode_sharing`], a payload
//! that the decoder lends straight out of the buffer (postcard does) becomes a reference-counted
//! slice of it. The encoding does not change; anywhere else, and for any other deserializer, the
//! fields decode as before.
//!
//! The slices keep the whole buffer alive while any record of it does, which is what a cache of
//! the same entries would hold anyway.

use std::cell::RefCell;
use std::fmt;

use bytes::Bytes;
use serde::de::Error;
use serde::de::SeqAccess;
use serde::de::Visitor;
use serde::Deserializer;

thread_local! {
    /// The buffer being decoded by [`decode_sharing`] on this thread, if any.
    static SOURCE: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Runs `decode`, which must decode from `source` (or a part of it): record payloads it reads
/// become slices of `source`.
pub fn decode_sharing<R>(source: &Bytes, decode: impl FnOnce(&[u8]) -> R) -> R {
    let previous = SOURCE.with(|current| current.replace(Some(source.clone())));
    // Restores the outer source even if `decode` panics, so a later decode never slices a
    // buffer it did not come from (`share` checks the address range anyway).
    struct Restore(Option<Bytes>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SOURCE.with(|current| *current.borrow_mut() = previous);
        }
    }
    let _restore = Restore(previous);
    decode(source)
}

/// `borrowed` as a slice of the current source if it lies within it, else a copy.
fn share(borrowed: &[u8]) -> Bytes {
    SOURCE.with(|current| {
        let current = current.borrow();
        match current.as_ref() {
            Some(source) if within(source, borrowed) => source.slice_ref(borrowed),
            _ => Bytes::copy_from_slice(borrowed),
        }
    })
}

fn within(source: &Bytes, part: &[u8]) -> bool {
    let outer = source.as_ptr_range();
    let inner = part.as_ptr_range();
    !part.is_empty() && outer.start <= inner.start && inner.end <= outer.end
}

struct SharedBytesVisitor;

impl<'de> Visitor<'de> for SharedBytesVisitor {
    type Value = Bytes;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a byte string")
    }

    fn visit_borrowed_bytes<E: Error>(self, v: &'de [u8]) -> Result<Bytes, E> {
        Ok(share(v))
    }

    fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v))
    }

    fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_str<E: Error>(self, v: &str) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v.as_bytes()))
    }

    // Self-describing formats such as JSON write bytes as a sequence of numbers.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Ok(Bytes::from(bytes))
    }
}

/// `#[serde(deserialize_with)]` for a `Bytes` field that may share the decoded buffer.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
    deserializer.deserialize_bytes(SharedBytesVisitor)
}

struct SharedOptionVisitor;

impl<'de> Visitor<'de> for SharedOptionVisitor {
    type Value = Option<Bytes>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("an optional byte string")
    }

    fn visit_none<E: Error>(self) -> Result<Option<Bytes>, E> {
        Ok(None)
    }

    fn visit_unit<E: Error>(self) -> Result<Option<Bytes>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Bytes>, D::Error> {
        deserialize(deserializer).map(Some)
    }
}

/// `#[serde(deserialize_with)]` for an `Option<Bytes>` field that may share the decoded buffer.
pub fn deserialize_option<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Bytes>, D::Error> {
    deserializer.deserialize_option(SharedOptionVisitor)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde::Serialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Sample {
        #[serde(deserialize_with = "deserialize_option")]
        key: Option<Bytes>,
        #[serde(deserialize_with = "deserialize")]
        value: Bytes,
        #[serde(deserialize_with = "deserialize_option")]
        absent: Option<Bytes>,
    }

    fn sample() -> Sample {
        Sample {
            key: Some(Bytes::from_static(b"key")),
            value: Bytes::from(vec![7u8; 1000]),
            absent: None,
        }
    }

    fn inside(source: &Bytes, part: &Bytes) -> bool {
        within(source, part)
    }

    #[test]
    fn payloads_decoded_inside_decode_sharing_are_slices_of_the_source() {
        let source = Bytes::from(postcard::to_stdvec(&sample()).unwrap());
        let decoded: Sample = decode_sharing(&source, |input| postcard::from_bytes(input)).unwrap();
        assert_eq!(decoded, sample());
        assert!(inside(&source, &decoded.value));
        assert!(inside(&source, decoded.key.as_ref().unwrap()));
    }

    #[test]
    fn payloads_decoded_from_part_of_the_source_are_slices_of_it() {
        let encoded = postcard::to_stdvec(&sample()).unwrap();
        let mut framed = vec![0xAA; 16];
        framed.extend_from_slice(&encoded);
        let source = Bytes::from(framed);
        let decoded: Sample =
            decode_sharing(&source, |input| postcard::from_bytes(&input[16..])).unwrap();
        assert_eq!(decoded, sample());
        assert!(inside(&source, &decoded.value));
    }

    #[test]
    fn payloads_decoded_elsewhere_are_copies() {
        let encoded = postcard::to_stdvec(&sample()).unwrap();
        let other = Bytes::from(vec![1u8; 4096]);
        let outside: Sample = postcard::from_bytes(&encoded).unwrap();
        let foreign: Sample = decode_sharing(&other, |_| postcard::from_bytes(&encoded)).unwrap();
        assert_eq!(outside, sample());
        assert_eq!(foreign, sample());
        assert!(!inside(&other, &foreign.value));
    }

    #[test]
    fn self_describing_formats_still_decode() {
        let json = serde_json::to_string(&sample()).unwrap();
        let decoded: Sample = serde_json::from_str(&json).unwrap();
        assert_eq!(decoded, sample());
    }
}
