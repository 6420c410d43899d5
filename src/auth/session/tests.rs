use super::*;
use crate::config::{Secret, SessionStoreKind};
use http::HeaderValue;

fn codec() -> SessionCodec {
    codec_with("0123456789abcdef0123456789abcdef", &[])
}

fn codec_with(secret: &str, previous: &[&str]) -> SessionCodec {
    SessionCodec::new(
        &SessionSettings {
            secret: Secret::new(secret.into()),
            cookie_name: "portcullis".into(),
            lifetime: Duration::from_secs(3600),
            secure: true,
            same_site: SameSite::Lax,
            refresh: true,
            store: SessionStoreKind::Cookie,
            redis_url: None,
            redis_urls: Vec::new(),
            redis_key_prefix: "portcullis:".into(),
            previous_secrets: previous.iter().map(|p| Secret::new((*p).into())).collect(),
            state_dir: None,
            outlive_access_token: false,
            websocket_check: std::time::Duration::from_secs(30),
        },
        "http://idp/realms/x",
        "gateway",
        Default::default(),
    )
}

fn data(big: usize) -> SessionData {
    SessionData {
        sid: random_token(16),
        iat: now(),
        exp: now() + 3600,
        id_token: "x".repeat(big),
        access_token: Some("a".into()),
        refresh_token: None,
        at_exp: None,
    }
}

/// Turns `Set-Cookie` values into a `Cookie` request header.
fn request(set_cookies: &[String]) -> HeaderMap {
    let pairs: Vec<&str> = set_cookies
        .iter()
        .map(|c| c.split(';').next().unwrap_or(""))
        .collect();
    let mut h = HeaderMap::new();
    h.insert(
        header::COOKIE,
        HeaderValue::from_str(&pairs.join("; ")).expect("valid"),
    );
    h
}

#[test]
fn small_and_large_sessions_round_trip() {
    let c = codec();
    for (size, chunks) in [(10, 1), (6000, 3), (20000, 8)] {
        let d = data(size);
        let set = c.seal(&d, 0);
        assert_eq!(set.len(), chunks, "{size} bytes");
        for s in &set {
            assert!(s.len() < 4000, "cookie too large: {}", s.len());
            assert!(
                s.contains("HttpOnly")
                    && s.contains("Secure")
                    && s.contains("SameSite=Lax")
                    && s.contains("Path=/")
            );
        }
        match c.open(&request(&set)) {
            SessionLookup::Valid {
                data: got,
                chunks: n,
                stale,
            } => {
                assert!(!stale);
                assert_eq!(got.sid, d.sid);
                assert_eq!(got.id_token.len(), size);
                assert_eq!(n, chunks);
            }
            other => panic!("{size}: {other:?}"),
        }
    }
}

#[test]
fn tampered_truncated_swapped_and_foreign_cookies_are_no_session() {
    let c = codec();
    let a = c.seal(&data(6000), 0);
    let b = c.seal(&data(6000), 0);
    // Swap chunk 1 between two valid sessions.
    let swapped = vec![a[0].clone(), b[1].clone(), a[2].clone()];
    assert!(matches!(
        c.open(&request(&swapped)),
        SessionLookup::Invalid { chunks: 3 }
    ));
    // Drop a chunk.
    assert!(matches!(
        c.open(&request(&a[..2])),
        SessionLookup::Invalid { .. }
    ));
    // Flip a character.
    let mut t = a.clone();
    t[1] = t[1].replacen('A', "B", 1).replacen('a', "b", 1);
    assert!(matches!(
        c.open(&request(&t)),
        SessionLookup::Invalid { .. }
    ));
    // Another secret cannot read it.
    let other = SessionCodec::new(
        &c.settings,
        "http://idp/realms/x",
        "another-client",
        Default::default(),
    );
    assert!(matches!(
        other.open(&request(&a)),
        SessionLookup::Invalid { .. }
    ));
    // Garbage.
    let mut h = HeaderMap::new();
    h.insert(
        header::COOKIE,
        HeaderValue::from_static("portcullis=99.abc"),
    );
    assert!(matches!(c.open(&h), SessionLookup::Invalid { .. }));
    h.insert(header::COOKIE, HeaderValue::from_static("portcullis=junk"));
    assert!(matches!(c.open(&h), SessionLookup::Invalid { .. }));
    assert!(matches!(c.open(&HeaderMap::new()), SessionLookup::None));
}

#[test]
fn expired_and_revoked_sessions_are_refused() {
    let c = codec();
    let mut d = data(10);
    d.exp = now() - 1;
    assert!(matches!(
        c.open(&request(&c.seal(&d, 0))),
        SessionLookup::Invalid { .. }
    ));
    let d = data(10);
    let set = c.seal(&d, 0);
    assert!(matches!(
        c.open(&request(&set)),
        SessionLookup::Valid { .. }
    ));
    c.revoke(&d.sid, d.exp).unwrap();
    assert!(matches!(
        c.open(&request(&set)),
        SessionLookup::Invalid { .. }
    ));
}

#[test]
fn shrinking_a_session_clears_leftover_chunks() {
    let c = codec();
    let set = c.seal(&data(10), 3);
    assert_eq!(set.len(), 3);
    assert!(set[1].starts_with("portcullis_1=;") && set[1].contains("Max-Age=0"));
}

#[test]
fn login_state_is_bound_to_its_state() {
    let c = codec();
    let login = LoginState {
        state: random_token(24),
        nonce: random_token(24),
        verifier: random_token(32),
        rd: "/x".into(),
        iat: now(),
        acr: Vec::new(),
        max_age: None,
    };
    let set = c.seal_login(&login).expect("sealed");
    assert!(set.contains("SameSite=Lax"));
    let h = request(&[set]);
    assert_eq!(
        c.open_login(&h, &login.state).map(|l| l.nonce),
        Some(login.nonce.clone())
    );
    assert!(c.open_login(&h, "someone-elses-state").is_none());
    let mut old = login.clone();
    old.iat = now() - 3600;
    let h = request(&[c.seal_login(&old).expect("sealed")]);
    assert!(c.open_login(&h, &login.state).is_none(), "expired attempt");
}

#[test]
fn first_use_is_true_for_exactly_one_of_many_racing_callers() {
    let r = Revocations::default();
    let exp = now() + 60;
    for round in 0..20 {
        let id = format!("state-{round}");
        let barrier = std::sync::Barrier::new(8);
        let wins: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        r.first_use(&id, exp)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| usize::from(h.join().expect("no panic")))
                .sum()
        });
        assert_eq!(wins, 1, "{id}");
        assert!(r.contains(&id));
    }
}

#[test]
fn expired_revocations_count_as_absent() {
    let r = Revocations::default();
    r.revoke("old", now() - 1).unwrap();
    assert!(!r.contains("old"));
    r.revoke("live", now() + 60).unwrap();
    assert!(r.contains("live"));
    // A one-time value whose mark expired may be used again, once.
    assert!(r.first_use("old", now() + 60));
    assert!(!r.first_use("old", now() + 60));
}

#[test]
fn cookies_sealed_with_a_previous_secret_open_and_are_marked_for_resealing() {
    const OLD: &str = "an-old-secret-that-was-rotated-out-000";
    const NEW: &str = "the-current-secret-of-this-gateway-0000";
    let old = codec_with(OLD, &[]);
    let d = data(10);
    let sealed_old = old.seal(&d, 0);
    let rotated = codec_with(NEW, &[OLD]);
    match rotated.open(&request(&sealed_old)) {
        SessionLookup::Valid { data, stale, .. } => {
            assert_eq!(data.sid, d.sid);
            assert!(stale, "opened with a previous secret");
        }
        other => panic!("{other:?}"),
    }
    // Re-sealed, it opens with the current secret alone.
    let resealed = rotated.seal(&d, 0);
    match codec_with(NEW, &[]).open(&request(&resealed)) {
        SessionLookup::Valid { stale, .. } => assert!(!stale),
        other => panic!("{other:?}"),
    }
    // Once the old secret is no longer listed, its cookies are no session.
    assert!(matches!(
        codec_with(NEW, &[]).open(&request(&sealed_old)),
        SessionLookup::Invalid { .. }
    ));
}

#[test]
fn revocations_survive_a_reopen_and_the_file_is_pruned_and_compacted() {
    use journal::{Entry, FILE};
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let r = Revocations::open(dir.path()).unwrap();
    r.revoke("gw-live", t + 600).unwrap();
    r.revoke("gw-expired", t - 1).unwrap();
    r.end_provider_session("psid\twith\ntabs%", t + 600)
        .unwrap();
    r.end_subject("bob", t - 5, t + 600).unwrap();
    assert!(r.first_logout_token("jti-1", t + 600));
    drop(r);
    // Written by hand: an expired line of each kind and lines that are not ours.
    let path = dir.path().join(FILE);
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&Entry::Id("old-1".into(), t - 100).line());
    text.push_str(&Entry::Subject("carol".into(), t - 100, t - 200).line());
    text.push_str("garbage\n\nid\tno-expiry\nid\tx\t12\textra\nnope\tx\t99999999999\n");
    text.push_str("id\t\t99999999999\nsub\tdave\t99999999999\n");
    std::fs::write(&path, [text.as_bytes(), b"\xff\xfe\tbad utf-8\n"].concat()).unwrap();

    let r = Revocations::open(dir.path()).unwrap();
    assert!(r.contains("gw-live"));
    assert!(!r.contains("gw-expired"));
    assert!(!r.contains("old-1"));
    assert!(r.is_ended("any", Some("psid\twith\ntabs%"), "nobody", t));
    assert!(
        r.is_ended("any", None, "bob", t - 10),
        "created before bob's logout"
    );
    assert!(!r.is_ended("any", None, "bob", t), "created after it");
    assert!(!r.first_logout_token("jti-1", t + 600), "still used");
    // Compacted: only the live entries, each on its own well-formed line.
    let compacted = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = compacted.lines().collect();
    assert_eq!(lines.len(), 4, "{compacted}");
    assert!(
        lines.iter().all(|l| Entry::parse(l).is_some()),
        "{compacted}"
    );
    for gone in ["gw-expired", "old-1", "carol", "garbage", "dave", "extra"] {
        assert!(!compacted.contains(gone), "{gone}: {compacted}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn the_journal_is_compacted_when_it_grows_past_twice_the_live_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(journal::FILE);
    let r = Revocations::open(dir.path()).unwrap();
    // The same id over and over: one live entry, many appends.
    for i in 0..1500u64 {
        r.revoke("gw-again", now() + 600 + i).unwrap();
    }
    let lines = std::fs::read_to_string(&path).unwrap().lines().count();
    assert!(lines <= 1100, "{lines} lines for one live entry");
    assert!(r.contains("gw-again"));
    drop(r);
    assert!(Revocations::open(dir.path()).unwrap().contains("gw-again"));
}

#[cfg(target_os = "linux")]
#[test]
fn a_revocation_that_cannot_be_written_is_an_error_but_holds_in_memory() {
    let r = Revocations {
        journal: Some(Journal::failing().unwrap()),
        ..Default::default()
    };
    let t = now();
    assert!(r.revoke("gw-1", t + 60).is_err());
    assert!(r.contains("gw-1"), "refused by this process all the same");
    assert!(r.end_provider_session("psid-1", t + 60).is_err());
    assert!(r.end_subject("bob", t, t + 60).is_err());
    assert!(r.is_ended("x", Some("psid-1"), "nobody", t));
    // One-time values stay one-time when their record fails.
    assert!(r.first_use("state-1", t + 60));
    assert!(!r.first_use("state-1", t + 60));
    assert!(r.first_logout_token("jti-1", t + 60));
    r.forget_logout_token("jti-1");
    assert!(
        r.first_logout_token("jti-1", t + 60),
        "a retry after a 503 is accepted"
    );
}

/// The pairs as `str::split` finds them: what `cookie_pairs` must give, faster.
fn pairs_by_split(header: &str) -> Vec<(&str, &str, &str)> {
    header
        .split(';')
        .filter_map(|pair| {
            let pair = pair.trim();
            let (name, value) = pair.split_once('=')?;
            let name = name.trim();
            (!name.is_empty()).then(|| (name, value.trim(), pair))
        })
        .collect()
}

proptest::proptest! {
    #[test]
    fn cookie_pairs_are_the_pairs_split_finds(header in "[a-z=; \t\u{e9}\u{2028}.]{0,40}") {
        proptest::prop_assert_eq!(cookie_pairs(&header).collect::<Vec<_>>(), pairs_by_split(&header));
    }
}

#[test]
fn cookie_pairs_of_edge_headers() {
    for h in [
        "",
        ";",
        "a=1",
        "a=1;",
        ";a=1",
        " a = 1 ; b=2;;c",
        "=x; y=",
        "é=ü;ß=1",
    ] {
        assert_eq!(
            cookie_pairs(h).collect::<Vec<_>>(),
            pairs_by_split(h),
            "{h:?}"
        );
    }
}

proptest::proptest! {
    /// `cookie_text` accepts exactly what `std::str::from_utf8` accepts, on any bytes a
    /// header value can hold (visible ASCII, space, tab and every byte from 0x80 up, so
    /// truncated, overlong and surrogate sequences too), at lengths on both sides of the
    /// validator's 64-byte blocks.
    #[test]
    fn cookie_text_is_std_utf8(
        bytes in proptest::collection::vec(
            proptest::prop_oneof![0x20u8..0x7f, 0x80u8..=0xff, proptest::strategy::Just(b'\t')],
            0..300,
        )
    ) {
        let v = HeaderValue::from_bytes(&bytes).unwrap();
        proptest::prop_assert_eq!(cookie_text(&v), std::str::from_utf8(&bytes).ok());
    }
}

#[test]
fn cookie_text_of_edge_values() {
    let long_ascii = "a".repeat(6000);
    let mut broken_at_end = long_ascii.clone().into_bytes();
    broken_at_end.push(0xc3);
    for bytes in [
        b"".as_slice(),
        "session=é".as_bytes(),
        b"a=\xff",
        b"a=\xc3",
        b"a=\xed\xa0\x80",
        b"a=\xf4\x90\x80\x80",
        long_ascii.as_bytes(),
        &broken_at_end,
    ] {
        let v = HeaderValue::from_bytes(bytes).unwrap();
        assert_eq!(
            cookie_text(&v),
            std::str::from_utf8(bytes).ok(),
            "{bytes:?}"
        );
    }
}

#[test]
fn request_cookies_give_the_first_of_each_name_over_all_cookie_headers() {
    let mut h = HeaderMap::new();
    h.append(header::COOKIE, HeaderValue::from_static("a=1; b=2; a=3"));
    h.append(
        header::COOKIE,
        HeaderValue::from_bytes(b"c=\xff; d=9").unwrap(),
    );
    h.append(
        header::COOKIE,
        HeaderValue::from_static(" b = 4 ;c=5;=6; e"),
    );
    let cookies = request_cookies(&h);
    assert_eq!(cookies.get("a"), Some("1"));
    assert_eq!(cookies.get("b"), Some("2"));
    // The header that is not UTF-8 is ignored as a whole.
    assert_eq!(cookies.get("d"), None);
    assert_eq!(cookies.get("c"), Some("5"));
    // No name, or no `=`: not a cookie.
    assert_eq!(cookies.get(""), None);
    assert_eq!(cookies.get("e"), None);
    assert_eq!(cookies.get("A"), None, "names are case-sensitive");
    assert_eq!(request_cookies(&HeaderMap::new()).get("a"), None);
}
