use http::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use http::Method;

use super::*;

fn m(s: &str) -> Method {
    Method::from_bytes(s.as_bytes()).unwrap()
}

#[test]
fn override_keys_in_every_reading() {
    for k in [
        "_method",
        "_METHOD",
        "_Method",
        " _method",
        "  _method",
        ".method",
        "[method",
        "_method[]",
        "_method[0]",
        "_method[a][b]",
        "_method\0junk",
        "_MeThOd[x]",
    ] {
        assert!(is_override_key(k), "{k:?}");
    }
    for k in [
        "method",
        " method",
        "__method",
        "_methods",
        "_method_",
        "x_method",
        "_metho",
        "",
        "_method]",
        "\0_method",
        "_me\0thod",
    ] {
        assert!(!is_override_key(k), "{k:?}");
    }
}

#[test]
fn query_overrides_are_decoded_repeated_and_case_folded() {
    let cases: &[(&str, &[&str])] = &[
        ("_method=DELETE", &["DELETE"]),
        ("_method=delete", &["DELETE"]),
        ("%5Fmethod=DELETE", &["DELETE"]),
        ("%5fMETHOD=put", &["PUT"]),
        ("_method=%44ELETE", &["DELETE"]),
        ("_method=PUT&_method=DELETE", &["PUT", "DELETE"]),
        ("a=1&_Method=PATCH&b=2", &["PATCH"]),
        ("_method[]=DELETE&_method[]=PUT", &["DELETE", "PUT"]),
        (".method=DELETE", &["DELETE"]),
        ("+_method=DELETE", &["DELETE"]),
        ("_method%00x=DELETE", &["DELETE"]),
        ("_method=+DELETE+", &["DELETE"]),
        ("_method=", &[]),
        ("_method", &[]),
        ("method=DELETE", &[]),
        ("x=_method%3DDELETE", &[]),
        ("", &[]),
    ];
    for (q, want) in cases {
        let got = from_query(Some(q)).unwrap();
        let want: Vec<Method> = want.iter().map(|s| m(s)).collect();
        assert_eq!(got, want, "{q}");
    }
    assert_eq!(from_query(None).unwrap(), Vec::<Method>::new());
    for q in [
        "_method=a%20b",
        "_method=DE(LETE",
        "_method=%00%01",
        "_method=%FF",
        "_method=a,b",
    ] {
        assert_eq!(from_query(Some(q)), Err(OverrideError::InvalidValue), "{q}");
    }
}

fn headers(ct: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
    h
}

#[test]
fn body_kinds() {
    assert_eq!(
        body_kind(
            &Method::POST,
            &headers("application/x-www-form-urlencoded; charset=utf-8")
        ),
        Some(BodyKind::Form)
    );
    assert_eq!(
        body_kind(&Method::POST, &headers("Application/X-WWW-Form-URLEncoded")),
        Some(BodyKind::Form)
    );
    assert_eq!(
        body_kind(
            &Method::POST,
            &headers("multipart/form-data; boundary=\"abc\"")
        ),
        Some(BodyKind::Multipart {
            boundary: "abc".into()
        })
    );
    assert_eq!(
        body_kind(&Method::POST, &headers("application/json")),
        Some(BodyKind::Json)
    );
    assert_eq!(
        body_kind(&Method::POST, &headers("application/vnd.api+json")),
        Some(BodyKind::Json)
    );
    assert_eq!(body_kind(&Method::POST, &headers("text/plain")), None);
    assert_eq!(body_kind(&Method::PUT, &headers("application/json")), None);
    assert_eq!(body_kind(&Method::POST, &HeaderMap::new()), None);
}

#[test]
fn form_json_and_multipart_bodies() {
    let got = from_body(&BodyKind::Form, b"name=x&_method=DELETE&_METHOD=put").unwrap();
    assert_eq!(got, [Method::DELETE, Method::PUT]);
    let got = from_body(
        &BodyKind::Json,
        br#"{"a":1,"_method":"delete","_METHOD":"PATCH"}"#,
    )
    .unwrap();
    assert_eq!(got, [Method::DELETE, Method::PATCH]);
    let got = from_body(&BodyKind::Json, br#"{"_method":"PUT","_method":"DELETE"}"#).unwrap();
    assert_eq!(
        got,
        [Method::PUT, Method::DELETE],
        "both copies of a repeated key"
    );
    let got = from_body(&BodyKind::Json, br#"{"_method":["DELETE"]}"#).unwrap();
    assert_eq!(got, [Method::DELETE]);
    assert!(
        from_body(&BodyKind::Json, br#"{"nested":{"_method":"DELETE"}}"#)
            .unwrap()
            .is_empty()
    );
    assert!(from_body(&BodyKind::Json, b"not json").unwrap().is_empty());
    assert!(from_body(&BodyKind::Json, b"[1,2]").unwrap().is_empty());

    let mp = |b: &str| BodyKind::Multipart { boundary: b.into() };
    let body = "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello\r\n\
                --XyZ\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n\
                --XyZ\r\ncontent-disposition: form-data; name=_Method\r\n\r\nput\r\n--XyZ--\r\n";
    assert_eq!(
        from_body(&mp("XyZ"), body.as_bytes()).unwrap(),
        [Method::DELETE, Method::PUT]
    );
    let body =
        "--b  \r\nContent-Disposition: form-data; name*=utf-8''%5Fmethod\r\n\r\nPATCH\r\n--b--";
    assert_eq!(
        from_body(&mp("b"), body.as_bytes()).unwrap(),
        [Method::PATCH]
    );
    // No closing delimiter, no boundary, a part without a blank line: refused.
    let open = "--b\r\nContent-Disposition: form-data; name=\"x\"\r\n\r\n1\r\n";
    assert_eq!(
        from_body(&mp("b"), open.as_bytes()),
        Err(OverrideError::Multipart)
    );
    assert_eq!(from_body(&mp(""), b"--b--"), Err(OverrideError::Multipart));
    let headless = "--b\r\nContent-Disposition: form-data; name=\"_method\"\r\nDELETE\r\n--b--";
    assert_eq!(
        from_body(&mp("b"), headless.as_bytes()),
        Err(OverrideError::Multipart)
    );
}
