//! The on-disk frame of one log entry.
//!
//! Layout, all integers big-endian:
//! `magic: u32 | payload_len: u32 | crc32c(payload_len ++ payload): u32 | payload`.
//! The magic lets recovery find the intact frames after a damaged one, to report how many an
//! unsynced tail cut off took with it.
//! A header of all zeros marks the end of the written part of a preallocated segment.

use raftlog_types::limits::ENTRY_BYTES_MAX;

/// "RLOG" in ASCII.
pub const FRAME_MAGIC: u32 = 0x524c_4f47;

/// Bytes before the payload.
pub const FRAME_HEADER_BYTES: usize = 12;

/// Fills in the header of a frame whose header space and payload are `out`.
pub fn encode_frame_in_place(out: &mut [u8]) {
    debug_assert!(out.len() >= FRAME_HEADER_BYTES);
    let payload_len = (out.len() - FRAME_HEADER_BYTES) as u32;
    let len_bytes = payload_len.to_be_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), &out[FRAME_HEADER_BYTES..]);
    out[0..4].copy_from_slice(&FRAME_MAGIC.to_be_bytes());
    out[4..8].copy_from_slice(&len_bytes);
    out[8..12].copy_from_slice(&crc.to_be_bytes());
}

/// What is found at a position of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameCheck {
    /// An intact frame whose payload is `FRAME_HEADER_BYTES .. FRAME_HEADER_BYTES + payload_len`.
    Valid {
        /// Length of the payload.
        payload_len: usize,
    },
    /// Zeros or the end of the file: the written part of the segment ends here.
    End,
    /// Something that is neither an intact frame nor the end.
    Damaged {
        /// Which check failed.
        reason: String,
    },
}

/// Checks the frame at the start of `buf`, which extends to the end of the readable data.
pub fn check_frame(buf: &[u8]) -> FrameCheck {
    if buf.is_empty() {
        return FrameCheck::End;
    }
    if buf.len() < FRAME_HEADER_BYTES {
        return if buf.iter().all(|b| *b == 0) {
            FrameCheck::End
        } else {
            FrameCheck::Damaged {
                reason: format!(
                    "{} trailing bytes are too short for a frame header",
                    buf.len()
                ),
            }
        };
    }
    let header = &buf[..FRAME_HEADER_BYTES];
    if header.iter().all(|b| *b == 0) {
        return FrameCheck::End;
    }
    let magic = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    if magic != FRAME_MAGIC {
        return FrameCheck::Damaged {
            reason: format!("bad frame magic {magic:#010x}"),
        };
    }
    let payload_len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if u64::from(payload_len) > ENTRY_BYTES_MAX {
        return FrameCheck::Damaged {
            reason: format!("frame length {payload_len} exceeds {ENTRY_BYTES_MAX}"),
        };
    }
    let payload_len = payload_len as usize;
    if buf.len() - FRAME_HEADER_BYTES < payload_len {
        return FrameCheck::Damaged {
            reason: format!(
                "frame length {payload_len} runs past the end of the file ({} bytes left)",
                buf.len() - FRAME_HEADER_BYTES
            ),
        };
    }
    let stored_crc = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    let payload = &buf[FRAME_HEADER_BYTES..FRAME_HEADER_BYTES + payload_len];
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[4..8]), payload);
    if crc != stored_crc {
        return FrameCheck::Damaged {
            reason: format!("checksum mismatch: stored {stored_crc:#010x}, computed {crc:#010x}"),
        };
    }
    FrameCheck::Valid { payload_len }
}

/// Positions after `from` where an intact frame starts, searching by the magic number.
pub fn find_intact_frame_after(buf: &[u8], from: usize) -> Option<usize> {
    let magic = FRAME_MAGIC.to_be_bytes();
    let mut pos = from;
    while pos + FRAME_HEADER_BYTES <= buf.len() {
        let found = buf[pos..].windows(4).position(|w| w == magic)?;
        let candidate = pos + found;
        if let FrameCheck::Valid { .. } = check_frame(&buf[candidate..]) {
            return Some(candidate);
        }
        pos = candidate + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; FRAME_HEADER_BYTES];
        out.extend_from_slice(payload);
        encode_frame_in_place(&mut out);
        out
    }

    #[test]
    fn intact_frame_is_valid_and_every_single_bit_flip_is_detected() {
        let bytes = frame(b"hello raftlog");
        assert_eq!(check_frame(&bytes), FrameCheck::Valid { payload_len: 13 });
        for bit in 0..bytes.len() * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(
                matches!(check_frame(&flipped), FrameCheck::Damaged { .. }),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn zeros_and_empty_input_mark_the_end() {
        assert_eq!(check_frame(&[]), FrameCheck::End);
        assert_eq!(check_frame(&[0u8; 100]), FrameCheck::End);
        assert_eq!(check_frame(&[0u8; 5]), FrameCheck::End);
        assert!(matches!(
            check_frame(&[0, 0, 1]),
            FrameCheck::Damaged { .. }
        ));
    }

    #[test]
    fn truncated_frame_is_damaged() {
        let bytes = frame(&[7u8; 100]);
        assert!(matches!(
            check_frame(&bytes[..50]),
            FrameCheck::Damaged { .. }
        ));
    }

    #[test]
    fn search_finds_the_next_intact_frame_only() {
        let mut buf = frame(b"first");
        let second_at = buf.len();
        buf.extend(frame(b"second"));
        buf[3] ^= 0xff;
        assert_eq!(find_intact_frame_after(&buf, 1), Some(second_at));
        assert_eq!(find_intact_frame_after(&buf, second_at + 1), None);
    }
}
