//! A WADO-RS answer as a hostile server could send it: the first byte picks
//! the Content-Type (with or without a boundary, quoted or not), the rest is
//! the body, read as an instance retrieve (one part) and as a study or
//! series retrieve (every part in turn). Any panic, or a part longer than
//! the limit, is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nightscreen::source::dicomweb::multipart;

const LIMIT: u64 = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else { return };
    let content_type = match pick % 4 {
        0 => "multipart/related; type=\"application/dicom\"; boundary=XyZ",
        1 => "multipart/related; boundary=\"a b\"",
        2 => "multipart/related",
        _ => "application/dicom",
    };
    let mut reader = body;
    if let Ok(instance) = multipart::single_instance(content_type, &mut reader, LIMIT) {
        assert!(instance.len() as u64 <= LIMIT);
    }
    let Ok(mut parts) = multipart::Parts::new(content_type, body, LIMIT) else { return };
    // Each part consumes at least its delimiter, so a body of n bytes has
    // fewer than n parts: more means the reader is not moving on.
    for _ in 0..=body.len() {
        match parts.next_part() {
            Ok(Some(part)) => assert!(part.len() as u64 <= LIMIT),
            Ok(None) | Err(_) => return,
        }
    }
    panic!("more parts than bytes: the reader does not move on");
});
