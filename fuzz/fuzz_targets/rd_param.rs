//! `rd` validation never panics and only ever returns a single-`/` path or a URL on
//! `public_url`'s origin.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(rd) = std::str::from_utf8(data) else {
        return;
    };
    let public = url::Url::parse("https://gw.example.com").expect("valid");
    let out = portcullis::endpoints::redirect::validate(Some(rd), &public);
    if out.starts_with('/') {
        assert!(!out.starts_with("//") && !out.starts_with("/\\"), "{out:?}");
        assert!(
            !out.contains('\\') && !out.chars().any(char::is_control),
            "{out:?}"
        );
    } else {
        let u = url::Url::parse(&out).expect("an absolute rd is a URL");
        assert_eq!(u.origin(), public.origin(), "{out:?}");
    }
});
