//! Frames between rq-worker and its Python processes (the format `runner.py` documents).
//!
//! A frame is a big-endian `u32` item count, then each item as a big-endian `u32` length and its
//! bytes. Items are raw bytes (a job hash value, a pickled return value, a traceback), so nothing
//! is escaped or base64-encoded on the way. Limits keep a corrupt stream from asking for an
//! absurd allocation.

use std::io::{self, Read, Write};

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

/// Read one frame; `Ok(None)` at a clean end of stream (between frames).
pub fn read_frame<R: Read>(r: &mut R) -> io::Result<Option<Frame>> {
    let mut head = [0u8; 4];
    match r.read_exact(&mut head) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let count = u32::from_be_bytes(head);
    if count > MAX_ITEMS {
        return Err(bad(format!("frame of {count} items")));
    }
    let mut items = Vec::with_capacity(count.min(64) as usize);
    for _ in 0..count {
        r.read_exact(&mut head)?;
        let n = u32::from_be_bytes(head);
        if n > MAX_ITEM {
            return Err(bad(format!("frame item of {n} bytes")));
        }
        let mut item = Vec::new();
        r.by_ref().take(u64::from(n)).read_to_end(&mut item)?;
        if item.len() != n as usize {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream ended inside a frame",
            ));
        }
        items.push(item);
    }
    Ok(Some(items))
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
        let mut r = buf.as_slice();
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!(f, vec![b"job".to_vec(), vec![], vec![0, 255, 10]]);
        assert_eq!(read_frame(&mut r).unwrap().unwrap(), Vec::<Vec<u8>>::new());
        assert!(read_frame(&mut r).unwrap().is_none());
    }

    #[test]
    fn a_truncated_or_absurd_stream_is_an_error_not_an_allocation() {
        let mut buf = Vec::new();
        write_frame(&mut buf, &[b"finished".as_slice(), b"payload"]).unwrap();
        let cut = &buf[..buf.len() - 2];
        assert!(read_frame(&mut &cut[..]).is_err());
        let huge = [0xff, 0xff, 0xff, 0xff];
        assert_eq!(
            read_frame(&mut &huge[..]).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let big_item = [0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff];
        assert_eq!(
            read_frame(&mut &big_item[..]).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }
}
