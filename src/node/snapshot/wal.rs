//! Reading what SQLite keeps beside a WAL database, as its file formats define them: the
//! `-shm`'s header (the wal-index: the last committed frame, the database's size, the salts and
//! running checksum there) and the `-wal`'s frames, each checked.

use anyhow::{bail, ensure, Context, Result};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;

/// The `-shm`'s header: SQLite's record of what the `-wal` holds, committed.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct IndexHeader {
    pub page_size: u32,
    /// The last committed frame (0: none).
    pub max_frame: u32,
    /// The database's size in pages at that frame.
    pub n_page: u32,
    /// The running checksum at that frame.
    pub frame_cksum: (u32, u32),
    /// The `-wal` header's salts, as its bytes.
    pub salt: [u8; 8],
}

fn ne32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

impl IndexHeader {
    /// Both copies of the header (in the host's byte order), the same and whole. Pure.
    pub(super) fn parse(shm: &[u8; 96]) -> Result<IndexHeader> {
        let (a, b) = (&shm[..48], &shm[48..96]);
        ensure!(a == b, "the -shm's two headers differ (a write under way)");
        ensure!(
            ne32(a, 0) == 3_007_000 && a[12] == 1,
            "the -shm's header is not SQLite's"
        );
        let sum = checksum(&a[..40], (0, 0), u32::from_ne_bytes);
        ensure!(
            sum == (ne32(a, 40), ne32(a, 44)),
            "the -shm's header checksum is wrong"
        );
        let sz = u16::from_ne_bytes([a[14], a[15]]) as u32;
        Ok(IndexHeader {
            page_size: (sz & 0xfe00) + ((sz & 1) << 16),
            max_frame: ne32(a, 16),
            n_page: ne32(a, 20),
            frame_cksum: (ne32(a, 24), ne32(a, 28)),
            salt: a[32..40].try_into().expect("8 bytes"),
        })
    }
}

/// SQLite's WAL checksum over `data` (a multiple of 8 bytes), from `s`.
fn checksum(data: &[u8], s: (u32, u32), word: fn([u8; 4]) -> u32) -> (u32, u32) {
    let (mut s0, mut s1) = s;
    for chunk in data.chunks_exact(8) {
        let x0 = word(chunk[..4].try_into().expect("4 bytes"));
        let x1 = word(chunk[4..].try_into().expect("4 bytes"));
        s0 = s0.wrapping_add(x0).wrapping_add(s1);
        s1 = s1.wrapping_add(x1).wrapping_add(s0);
    }
    (s0, s1)
}

/// Every page in the `-wal`'s frames up to the header's last commit, with where its newest frame
/// there keeps its content; each frame checked (salts, running checksum). Starts after the
/// frames of `before` (the header just before the copy) when the WAL has gone on from it, else
/// at its first frame (it began again since: every frame is newer than the copy).
pub(super) fn committed_pages(
    wal: &File,
    hdr: &IndexHeader,
    before: Option<&IndexHeader>,
) -> Result<BTreeMap<u32, u64>> {
    let mut pages = BTreeMap::new();
    if hdr.max_frame == 0 {
        return Ok(pages);
    }
    let mut head = [0u8; 32];
    wal.read_exact_at(&mut head, 0)
        .context("the -wal has no header")?;
    let word: fn([u8; 4]) -> u32 = match be32(&head, 0) {
        0x377f_0682 => u32::from_le_bytes,
        0x377f_0683 => u32::from_be_bytes,
        m => bail!("the -wal's magic number is {m:#x}"),
    };
    ensure!(
        be32(&head, 8) == hdr.page_size && head[16..24] == hdr.salt,
        "the -wal's header is not the one the -shm records"
    );
    let (first, mut s) = match before {
        Some(b) if b.salt == hdr.salt && b.max_frame > 0 && b.max_frame <= hdr.max_frame => {
            (b.max_frame as u64, b.frame_cksum)
        }
        _ => {
            let s = checksum(&head[..24], (0, 0), word);
            ensure!(
                s == (be32(&head, 24), be32(&head, 28)),
                "the -wal header's checksum is wrong"
            );
            (0, s)
        }
    };
    let size = hdr.page_size as u64;
    let mut r = BufReader::with_capacity(1 << 20, wal);
    std::io::Seek::seek(&mut r, std::io::SeekFrom::Start(32 + first * (24 + size)))?;
    let mut frame = vec![0u8; 24 + size as usize];
    let mut last_commit = hdr.n_page;
    for i in first..hdr.max_frame as u64 {
        r.read_exact(&mut frame)
            .with_context(|| format!("the -wal ends before its frame {}", i + 1))?;
        ensure!(
            frame[8..16] == hdr.salt,
            "frame {} of the -wal is not of it",
            i + 1
        );
        s = checksum(&frame[..8], s, word);
        s = checksum(&frame[24..], s, word);
        ensure!(
            s == (be32(&frame, 16), be32(&frame, 20)),
            "frame {} of the -wal has a wrong checksum",
            i + 1
        );
        pages.insert(be32(&frame, 0), 32 + i * (24 + size) + 24);
        last_commit = be32(&frame, 4);
    }
    ensure!(
        last_commit == hdr.n_page && s == hdr.frame_cksum,
        "the -wal's last frame is not the commit the -shm records"
    );
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `-shm` header as SQLite writes it (`page_size` as its u16 field).
    fn shm_header(page_size: u16) -> [u8; 96] {
        let mut a = [0u8; 48];
        a[..4].copy_from_slice(&3_007_000u32.to_ne_bytes());
        a[12] = 1;
        a[14..16].copy_from_slice(&page_size.to_ne_bytes());
        a[16..20].copy_from_slice(&7u32.to_ne_bytes());
        a[20..24].copy_from_slice(&3u32.to_ne_bytes());
        a[32..40].copy_from_slice(b"saltsalt");
        let sum = checksum(&a[..40], (0, 0), u32::from_ne_bytes);
        a[40..44].copy_from_slice(&sum.0.to_ne_bytes());
        a[44..48].copy_from_slice(&sum.1.to_ne_bytes());
        let mut shm = [0u8; 96];
        shm[..48].copy_from_slice(&a);
        shm[48..].copy_from_slice(&a);
        shm
    }

    #[test]
    fn the_index_header_is_read_as_sqlite_writes_it() {
        let h = IndexHeader::parse(&shm_header(4096)).unwrap();
        assert_eq!((h.page_size, h.max_frame, h.n_page), (4096, 7, 3));
        assert_eq!(h.salt, *b"saltsalt");
        // 64 KiB pages are written as 1.
        assert_eq!(IndexHeader::parse(&shm_header(1)).unwrap().page_size, 65536);
        let mut torn = shm_header(4096);
        torn[60] ^= 1;
        assert!(IndexHeader::parse(&torn).is_err(), "two different copies");
        let mut wrong = shm_header(4096);
        wrong[16] ^= 1;
        wrong[64] ^= 1;
        assert!(
            IndexHeader::parse(&wrong).is_err(),
            "a checksum that does not hold"
        );
    }
}
