//! Line framing under arbitrary bytes cut into arbitrary reads: lines never
//! hold a newline or exceed the limit, the buffer stays bounded, and the
//! lines are those of the whole stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use parley::framing::{Frame, LineReader};

const MAX_LINE: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, stream)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(cut % 97) + 1;
    let mut reader = LineReader::new(MAX_LINE);
    let mut lines = Vec::new();
    for piece in stream.chunks(chunk) {
        reader.extend(piece);
        while let Some(frame) = reader.next_frame() {
            if let Frame::Line(line) = &frame {
                assert!(line.len() <= MAX_LINE);
                assert!(!line.contains(&b'\n'));
            }
            lines.push(frame);
        }
        assert!(reader.buffered() <= MAX_LINE + 1 + chunk);
    }
    // The complete lines within the limit are exactly those of a plain split.
    let mut want = Vec::new();
    let mut parts: Vec<&[u8]> = stream.split(|&b| b == b'\n').collect();
    parts.pop();
    for mut part in parts {
        if part.last() == Some(&b'\r') {
            part = &part[..part.len() - 1];
        }
        if part.len() <= MAX_LINE {
            want.push(part.to_vec());
        }
    }
    let got: Vec<Vec<u8>> = lines
        .into_iter()
        .filter_map(|f| match f {
            Frame::Line(l) => Some(l),
            Frame::TooLarge => None,
        })
        .collect();
    assert_eq!(got, want);
});
