//! The byte side of file transfers: a connection switches between lines and
//! raw bytes (an upload's file follows its request line on the same
//! socket). Under arbitrary interleavings of reads, line takes and raw
//! takes, no byte is lost, duplicated or reordered, and a download's chunk
//! arithmetic never asks for more than the file holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley::framing::{Frame, LineReader};
use parley::transfer::{Download, CHUNK};

fuzz_target!(|data: &[u8]| {
    // Bytes 0..4: the download's size; then (op, arg) pairs drive the reader.
    if data.len() < 4 {
        return;
    }
    let size = u64::from(u32::from_le_bytes([data[0], data[1], data[2], data[3]]) % (4 * CHUNK as u32));
    let ops = &data[4..];
    let mut reader = LineReader::new(1 << 20);
    let mut sent: Vec<u8> = Vec::new();
    let mut taken: Vec<u8> = Vec::new();
    let mut next_byte = 0u8;
    for pair in ops.chunks(2) {
        let (op, arg) = (pair[0], *pair.get(1).unwrap_or(&0));
        match op % 3 {
            0 => {
                // A read: `arg` bytes, a newline now and then.
                let bytes: Vec<u8> = (0..arg)
                    .map(|i| {
                        next_byte = next_byte.wrapping_add(1);
                        // Only the generated newlines end lines: a stray
                        // '\n' or a '\r' (dropped before a '\n') would not
                        // come back byte for byte.
                        if next_byte == b'\n' || next_byte == b'\r' {
                            next_byte = b'x';
                        }
                        if i % 7 == 3 {
                            b'\n'
                        } else {
                            next_byte
                        }
                    })
                    .collect();
                reader.extend(&bytes);
                sent.extend_from_slice(&bytes);
            }
            1 => {
                if let Some(Frame::Line(line)) = reader.next_frame() {
                    taken.extend_from_slice(&line);
                    taken.push(b'\n');
                }
            }
            _ => {
                let raw = reader.take_raw(usize::from(arg));
                assert!(raw.len() <= usize::from(arg));
                taken.extend_from_slice(&raw);
            }
        }
        assert_eq!(taken.len() + reader.buffered(), sent.len());
    }
    // What was taken is the stream's beginning, in order (lines end in '\n'
    // here because every generated newline is a bare one).
    assert_eq!(&taken[..], &sent[..taken.len()]);

    let mut download = Download {
        id: 1,
        size,
        requested: 0,
        queued: 0,
        last_activity: std::time::Instant::now(),
    };
    let mut rounds = 0;
    while download.queued < download.size {
        assert!(
            download.wants_chunk(0),
            "a download stalled at {} of {}",
            download.queued,
            size
        );
        let len = download.next_chunk_len();
        assert!(len > 0 && len <= CHUNK);
        download.requested += len as u64;
        assert!(!download.wants_chunk(0), "asked again before the chunk came");
        download.queued += len as u64;
        rounds += 1;
        assert!(rounds <= 5);
    }
    assert_eq!(download.queued, size);
    assert!(!download.wants_chunk(0));
});
