//! A WADO-RS answer as a hostile server could send it: the first byte picks
//! the Content-Type (with or without a boundary, quoted or not), the rest is
//! the body. Any panic, or an instance longer than the limit, is a bug.
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
});
