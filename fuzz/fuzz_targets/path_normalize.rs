//! `path::normalize` never panics, and what it accepts is a fixed point: normalizing the
//! result again gives the same path, which starts with one `/` and has no dot segments.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for allow_params in [false, true] {
        if let Ok(p) = portcullis::path::normalize(raw, allow_params) {
            let s = p.as_str();
            assert!(s.starts_with('/') && !s.starts_with("//"), "{s:?}");
            assert!(!s.split('/').any(|seg| seg == "." || seg == ".."), "{s:?}");
            let again =
                portcullis::path::normalize(s, allow_params).expect("a normalized path normalizes");
            assert_eq!(again.as_str(), s);
        }
    }
});
