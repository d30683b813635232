//! Frames between rq-worker and its Python processes (the format `runner.py` documents).
//!
//! A frame is a big-endian `u32` item count, then each item as a big-endian `u32` length and its
//! bytes. Items are raw bytes (a job hash value, a pickled return value, a traceback), so nothing
//! is escaped or base64-encoded on the way. Limits keep a corrupt stream from asking for an
//! absurd allocation.

use std::io::{self, Write};

/// Most items in one frame (a job hash has a few dozen fields).
pub const MAX_ITEMS: u32 = 100_000;
/// Largest item (a return value or a payload): 1 GiB, beyond Redis's 512 MB string limit.
pub const MAX_ITEM: u32 = 1 << 30;

/// One frame: its items in order.
pub type Frame = Vec<Vec<u8>>;

/// Write `items` as one frame (one `write_all`, so a frame is never interleaved).
pub fn write_frame<W: Write, I: AsRef<[u8]>>(w: &mut W, items: &[I]) -> io::Result<()> {
    let mut buf = Vec::with_capacity(4 + items.iter().map(|i| 4 + i.as_ref().len()).sum::<usize>());
    buf.extend_from_slice(&len_u32(items.len())?.to_be_bytes());
    for item in items {
        let item = item.as_ref();
        buf.extend_from_slice(&len_u32(item.len())?.to_be_bytes());
        buf.extend_from_slice(item);
    }
    w.write_all(&buf)?;
    w.flush()
}

fn len_u32(n: usize) -> io::Result<u32> {
    u32::try_from(n)
        .ok()
        .filter(|&n| n <= MAX_ITEM)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "frame item too large"))
}

/// Parse one frame from the front of `buf`: the frame and how many bytes it took, or `Ok(None)`
/// when `buf` does not hold a whole frame yet.
pub fn parse_frame(buf: &[u8]) -> io::Result<Option<(Frame, usize)>> {
    let u32_at = |at: usize| -> Option<u32> {
        let b = buf.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let Some(count) = u32_at(0) else {
        return Ok(None);
    };
    if count > MAX_ITEMS {
        return Err(bad(format!("frame of {count} items")));
    }
    let mut at = 4;
    let mut items = Vec::with_capacity(count.min(64) as usize);
    for _ in 0..count {
        let Some(n) = u32_at(at) else {
            return Ok(None);
        };
        if n > MAX_ITEM {
            return Err(bad(format!("frame item of {n} bytes")));
        }
        let (start, end) = (at + 4, at + 4 + n as usize);
        let Some(item) = buf.get(start..end) else {
            return Ok(None);
        };
        items.push(item.to_vec());
        at = end;
    }
    Ok(Some((items, at)))
}

fn bad(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_empty_and_binary_items() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &[b"job".as_slice(), b"", &[0, 255, 10]]).unwrap();
        write_frame::<_, &[u8]>(&mut buf, &[]).unwrap();
        assert_eq!(&buf[..8], &[0, 0, 0, 3, 0, 0, 0, 3]);
        let (f, used) = parse_frame(&buf).unwrap().unwrap();
        assert_eq!(f, vec![b"job".to_vec(), vec![], vec![0, 255, 10]]);
        let (g, used2) = parse_frame(&buf[used..]).unwrap().unwrap();
        assert_eq!(g, Vec::<Vec<u8>>::new());
        assert_eq!(used + used2, buf.len());
        assert!(parse_frame(&buf[buf.len()..]).unwrap().is_none());
    }

    #[test]
    fn an_absurd_frame_is_an_error_not_an_allocation() {
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            parse_frame(&huge).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let big_item = [0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff];
        assert_eq!(
            parse_frame(&big_item).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn partial_frames_wait_for_more_bytes() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &[b"forked".as_slice(), b"42"]).unwrap();
        write_frame(&mut buf, &[b"finished".as_slice()]).unwrap();
        for cut in 0..18 {
            assert!(parse_frame(&buf[..cut]).unwrap().is_none(), "cut {cut}");
        }
        let (f, used) = parse_frame(&buf).unwrap().unwrap();
        assert_eq!(f, vec![b"forked".to_vec(), b"42".to_vec()]);
        let (g, _) = parse_frame(&buf[used..]).unwrap().unwrap();
        assert_eq!(g, vec![b"finished".to_vec()]);
    }
}
