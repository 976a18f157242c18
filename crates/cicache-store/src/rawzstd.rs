//! Writing blobs: zstd, or a zstd frame of raw blocks when the data does not compress.
//!
//! Wheels are zip files of deflated members: zstd cannot shrink them and spends CPU trying.
//! For those we write a standard zstd frame made of raw (stored) blocks by hand, which any
//! zstd decoder reads, at memory-copy speed.

use std::io::{self, Read, Write};

const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
/// Frame header descriptor: no content size, not single-segment, no checksum, no dictionary.
const FHD: u8 = 0x00;
/// Window descriptor: exponent 7 → window 2^17 = 128 KiB, the largest block size.
const WINDOW: u8 = 7 << 3;
const BLOCK: usize = 128 * 1024;

/// Level used for compressible blobs and manifests.
pub const LEVEL: i32 = 3;

/// Copies `src` into `dst` as a zstd frame of raw blocks. Returns the bytes read.
pub fn write_raw_frame(
    mut src: impl Read,
    mut dst: impl Write,
    mut on_chunk: impl FnMut(&[u8]),
) -> io::Result<u64> {
    dst.write_all(&MAGIC)?;
    dst.write_all(&[FHD, WINDOW])?;
    let mut buf = vec![0u8; BLOCK];
    let mut total = 0u64;
    // Read a block ahead so the last block can carry the Last_Block flag.
    let mut cur = read_full(&mut src, &mut buf)?;
    let mut next_buf = vec![0u8; BLOCK];
    loop {
        let next = if cur == BLOCK {
            read_full(&mut src, &mut next_buf)?
        } else {
            0
        };
        let last = next == 0;
        let header = ((cur as u32) << 3) | u32::from(last); // Block_Type 0 = raw
        dst.write_all(&header.to_le_bytes()[..3])?;
        dst.write_all(&buf[..cur])?;
        on_chunk(&buf[..cur]);
        total += cur as u64;
        if last {
            break;
        }
        std::mem::swap(&mut buf, &mut next_buf);
        cur = next;
    }
    Ok(total)
}

fn read_full(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether data starting with `sample` is worth compressing.
pub fn compressible(sample: &[u8]) -> bool {
    if sample.len() < 4096 {
        return true;
    }
    match zstd::bulk::compress(sample, 1) {
        Ok(c) => (c.len() as f64) < sample.len() as f64 * 0.9,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_frames_decode_with_zstd() {
        for len in [0usize, 1, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut out = Vec::new();
            let n = write_raw_frame(&data[..], &mut out, |_| {}).unwrap();
            assert_eq!(n as usize, len);
            assert_eq!(zstd::decode_all(&out[..]).unwrap(), data, "len {len}");
        }
    }

    #[test]
    fn detects_incompressible() {
        let text = b"hello world ".repeat(10_000);
        assert!(compressible(&text));
        let mut noise = vec![0u8; 100_000];
        let mut x: u64 = 0x9E3779B97F4A7C15;
        for b in noise.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        assert!(!compressible(&noise));
    }
}
