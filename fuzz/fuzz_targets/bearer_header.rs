//! The credential extractor never panics on any `Authorization` header.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = http::HeaderMap::new();
    for part in data.split(|b| *b == b'\n').take(3) {
        if let Ok(v) = http::HeaderValue::from_bytes(part) {
            headers.append(http::header::AUTHORIZATION, v);
        }
    }
    let _ = portcullis::auth::extract(&headers);
});
