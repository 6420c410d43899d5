//! Method overrides judged as the upstream frameworks read them (Rails, Laravel, Symfony,
//! PHP): from the query, a form body, a multipart body and a JSON body, in every spelling.
//! A request must be allowed for its own method and for every method any reading could
//! produce; otherwise it is refused and never forwarded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use support::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// GET and POST on /items are public; every other method there needs the admin role.
const RULES: &str = r#"
[[rule]]
path = "/items/**"
methods = ["GET", "POST"]
access = "public"

[[rule]]
path = "/items/**"
roles = ["admin"]

[[rule]]
path = "/open/**"
access = "public"
"#;

async fn send(
    h: &Harness,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> support::RawResponse {
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        h.addr(),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    let mut s = tokio::net::TcpStream::connect(h.addr()).await.unwrap();
    // The gateway may answer before it read everything; a write error is not the test's.
    let _ = s.write_all(&bytes).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf)).await;
    support::parse_response(&buf)
}

async fn refused(
    h: &Harness,
    status: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) {
    let before = h.upstream.count();
    let r = send(h, method, target, headers, body).await;
    assert_eq!(
        r.status,
        status,
        "{method} {target} {:?}: {}",
        String::from_utf8_lossy(body),
        r.body
    );
    assert_eq!(
        h.upstream.count(),
        before,
        "{method} {target}: reached the upstream"
    );
}

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const JSON: (&str, &str) = ("Content-Type", "application/json");

#[tokio::test]
async fn query_overrides_in_every_spelling_are_judged() {
    let h = Harness::with(RULES).await;
    for q in [
        "_method=DELETE",
        "_method=delete",
        "%5Fmethod=DELETE",
        "%5fmethod=Delete",
        "_METHOD=DELETE",
        "_Method=put",
        "_method=%44ELETE",
        "_method=GET&_method=DELETE",
        "_method[]=DELETE",
        "_method[0]=PATCH",
        ".method=DELETE",
        "+_method=DELETE",
        "%20_method=DELETE",
        "_method%00=DELETE",
        "_method=+DELETE",
        "x=1&_method=DELETE&y=2",
    ] {
        for method in ["GET", "POST"] {
            refused(&h, 401, method, &format!("/items/1?{q}"), &[], b"").await;
        }
    }
    // Overrides that every framework ignores are no override.
    for q in [
        "method=DELETE",
        "__method=DELETE",
        "x=_method%3DDELETE",
        "_method=",
    ] {
        let r = send(&h, "GET", &format!("/items/1?{q}"), &[], b"").await;
        assert_eq!(r.status, 200, "{q}");
        assert_eq!(
            r.seen().target,
            format!("/items/1?{q}"),
            "the query is forwarded untouched"
        );
    }
    // Values that are not a method token are a 400.
    for q in [
        "_method=a%20b",
        "_method=DE(LETE",
        "_method=%FF",
        "_method=a%0D%0Ab",
    ] {
        refused(&h, 400, "GET", &format!("/items/1?{q}"), &[], b"").await;
    }
}

#[tokio::test]
async fn form_multipart_and_json_bodies_are_judged() {
    let h = Harness::with(RULES).await;
    for body in [
        "_method=DELETE",
        "a=1&_method=delete",
        "%5Fmethod=PUT",
        "_METHOD=PATCH",
        "_method[]=DELETE",
        "a=1&_method=POST&_method=DELETE",
    ] {
        refused(&h, 401, "POST", "/items/1", &[FORM], body.as_bytes()).await;
        refused(
            &h,
            401,
            "POST",
            "/items/1",
            &[(
                "Content-Type",
                "Application/X-WWW-Form-Urlencoded; charset=UTF-8",
            )],
            body.as_bytes(),
        )
        .await;
    }
    for body in [
        r#"{"_method":"DELETE"}"#,
        r#"{"a":1,"_METHOD":"put"}"#,
        r#"{"_method":"POST","_method":"DELETE"}"#,
        r#"{"_method":["DELETE"]}"#,
    ] {
        refused(&h, 401, "POST", "/items/1", &[JSON], body.as_bytes()).await;
        refused(
            &h,
            401,
            "POST",
            "/items/1",
            &[("Content-Type", "application/vnd.api+json")],
            body.as_bytes(),
        )
        .await;
    }
    let multipart = "--XyZ\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhi\r\n\
                     --XyZ\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--XyZ--\r\n";
    refused(
        &h,
        401,
        "POST",
        "/items/1",
        &[("Content-Type", "multipart/form-data; boundary=XyZ")],
        multipart.as_bytes(),
    )
    .await;
    // A multipart body that cannot be read part by part is a 400.
    refused(
        &h,
        400,
        "POST",
        "/items/1",
        &[("Content-Type", "multipart/form-data; boundary=XyZ")],
        b"--XyZ\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE",
    )
    .await;
    refused(&h, 400, "POST", "/items/1", &[FORM], b"_method=a b").await;
}

#[tokio::test]
async fn allowed_bodies_arrive_whole_and_admins_may_override() {
    let h = Harness::with(RULES).await;
    let body = "title=hello&text=a%20b";
    let r = send(&h, "POST", "/items/1", &[FORM], body.as_bytes()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.seen().method, "POST");
    assert_eq!(r.seen().body, body, "the body read is the body forwarded");

    let mut c = h.idp.claims("root", "gateway", "");
    c["realm_access"] = serde_json::json!({"roles": ["admin"]});
    let auth = format!("Bearer {}", h.idp.mint(&c));
    let body = "_method=DELETE&id=1";
    let r = send(
        &h,
        "POST",
        "/items/1",
        &[FORM, ("Authorization", &auth)],
        body.as_bytes(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.seen().body, body);
    let r = send(
        &h,
        "POST",
        "/items/1",
        &[JSON, ("Authorization", &auth)],
        br#"{"_method":"DELETE"}"#,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test]
async fn bodies_are_read_only_where_the_method_changes_the_rule() {
    let h = Harness::with(RULES).await;
    // Over the inspection limit on a method-sensitive path: 413, not forwarded.
    let big = vec![b'a'; portcullis::method_override::MAX_INSPECTED_BODY + 1];
    refused(&h, 413, "POST", "/items/1", &[FORM], &big).await;
    // The same body on a path whose rule does not depend on the method streams through,
    // and a `_method` there changes nothing the gateway decides.
    let r = send(&h, "POST", "/open/x", &[FORM], &big).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.seen().body.len(), big.len());
    // Other content types are never read on any path (frameworks read no _method there).
    let r = send(
        &h,
        "POST",
        "/items/1",
        &[("Content-Type", "text/plain")],
        b"_method=DELETE",
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.seen().body, "_method=DELETE");
}
