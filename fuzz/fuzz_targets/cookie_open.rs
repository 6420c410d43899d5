//! Session cookies never panic the session code, whatever a browser (or an attacker)
//! sends, and what the gateway seals it opens again unchanged.
//!
//! The first byte picks a mode, the rest is its input:
//! - 0: up to eight raw `Cookie` headers (split on `\n`), opened as a session and as a
//!   login attempt;
//! - 1: session chunks (split on `\0`) sent as `<name>=<count>.<part 0>`, `<name>_1=...`,
//!   with a count that may disagree with the number of chunks, in one or several headers;
//! - 2: a session built from the bytes, sealed, then opened (same data back, or no session
//!   beyond the chunk limit); a tampered or truncated seal is never a session;
//! - 3: a login attempt sealed and opened for its own state (same data back) and for
//!   another state (nothing).
#![no_main]

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{HeaderMap, HeaderValue, COOKIE};
use libfuzzer_sys::fuzz_target;
use portcullis::auth::session::{
    LoginState, Revocations, SealedSession, SessionCodec, SessionData, SessionLookup,
};
use portcullis::config::{SameSite, Secret, SessionSettings, SessionStoreKind};

const NAME: &str = "portcullis";
/// `session.rs` refuses more chunks than this.
const MAX_CHUNKS: usize = 12;
const ID_TOKEN_MAX: usize = 8 * 1024;

static CODEC: LazyLock<SessionCodec> = LazyLock::new(|| {
    SessionCodec::new(
        &SessionSettings {
            secret: Secret::new("0123456789abcdef0123456789abcdef".into()),
            cookie_name: NAME.into(),
            lifetime: Duration::from_secs(3600),
            secure: true,
            same_site: SameSite::Lax,
            refresh: true,
            store: SessionStoreKind::Cookie,
            redis_url: None,
            redis_urls: Vec::new(),
            redis_key_prefix: "portcullis:".into(),
            previous_secrets: Vec::new(),
            state_dir: None,
            outlive_access_token: false,
            websocket_check: std::time::Duration::from_secs(30),
        },
        "http://idp/realms/x",
        "gateway",
        Arc::new(Revocations::default()),
    )
});

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every entry point that reads request cookies; none may panic.
fn open_all(headers: &HeaderMap, state: &str) {
    let c = &*CODEC;
    let lookup = c.open(headers);
    if let SessionLookup::Invalid { chunks } | SessionLookup::Valid { chunks, .. } = lookup {
        assert!((1..=MAX_CHUNKS).contains(&chunks), "{chunks} chunks");
        let _ = c.clear(chunks);
    }
    if let SealedSession::Sealed { sealed, chunks } = c.read(headers) {
        let _ = c.unseal(&sealed, chunks);
    }
    let _ = c.open_login(headers, state);
    let _ = c.open_login(headers, "");
}

fn raw_headers(data: &[u8]) {
    let mut headers = HeaderMap::new();
    for part in data.split(|b| *b == b'\n').take(8) {
        if let Ok(v) = HeaderValue::from_bytes(part) {
            headers.append(COOKIE, v);
        }
    }
    let state = data.get(..32).map(text).unwrap_or_default();
    open_all(&headers, &state);
}

fn chunked(data: &[u8]) {
    let Some((&ctl, rest)) = data.split_first() else {
        return;
    };
    let parts: Vec<&[u8]> = rest.split(|b| *b == 0).take(MAX_CHUNKS + 2).collect();
    // Low bits: the declared count, relative to the real one; high bit: one header per chunk.
    let count = match ctl & 0x0f {
        0 => parts.len(),
        n => usize::from(n) - 1,
    };
    let mut pairs = Vec::with_capacity(parts.len());
    for (i, p) in parts.iter().enumerate() {
        let mut v = Vec::new();
        if i == 0 {
            v.extend_from_slice(format!("{NAME}={count}.").as_bytes());
        } else {
            v.extend_from_slice(format!("{NAME}_{i}=").as_bytes());
        }
        v.extend_from_slice(p);
        pairs.push(v);
    }
    let mut headers = HeaderMap::new();
    if ctl & 0x80 != 0 {
        for p in &pairs {
            if let Ok(v) = HeaderValue::from_bytes(p) {
                headers.append(COOKIE, v);
            }
        }
    } else if let Ok(v) = HeaderValue::from_bytes(&pairs.join(&b"; "[..])) {
        headers.append(COOKIE, v);
    }
    open_all(&headers, "");
}

/// The `Cookie` header a browser sends back for these `Set-Cookie` values.
fn request(set_cookies: &[String]) -> HeaderMap {
    let pairs: Vec<&str> = set_cookies
        .iter()
        .map(|c| c.split(';').next().unwrap_or(""))
        .collect();
    let mut h = HeaderMap::new();
    h.insert(
        COOKIE,
        HeaderValue::from_str(&pairs.join("; ")).expect("sealed cookies are header-safe"),
    );
    h
}

fn round_trip(data: &[u8]) {
    let c = &*CODEC;
    let [repeat, pos, byte, cut, ..] = *data else {
        return;
    };
    let fields: Vec<&[u8]> = data[4..].splitn(4, |b| *b == 0).collect();
    let field = |i: usize| fields.get(i).map(|f| text(f));
    let t = now();
    // Large sessions from small inputs: the ID token is its field repeated up to 16 times,
    // cut at 8 KiB (enough for more than 12 chunks once JSON escapes control characters).
    let mut id_token = field(1)
        .unwrap_or_default()
        .repeat(usize::from(repeat & 0x0f) + 1);
    if id_token.len() > ID_TOKEN_MAX {
        let mut end = ID_TOKEN_MAX;
        while !id_token.is_char_boundary(end) {
            end -= 1;
        }
        id_token.truncate(end);
    }
    let d = SessionData {
        sid: field(0).unwrap_or_default(),
        iat: t,
        exp: t + 3600,
        id_token,
        access_token: field(2),
        refresh_token: field(3),
        at_exp: (repeat & 0x10 != 0).then_some(t + u64::from(pos)),
    };
    let set = c.seal(&d, 0);
    assert!(!set.is_empty(), "a session always seals");
    let headers = request(&set);
    match c.open(&headers) {
        SessionLookup::Valid {
            data: got, chunks, ..
        } => {
            assert!(set.len() <= MAX_CHUNKS, "{} chunks opened", set.len());
            assert_eq!(chunks, set.len());
            assert_eq!(got.sid, d.sid);
            assert_eq!((got.iat, got.exp, got.at_exp), (d.iat, d.exp, d.at_exp));
            assert_eq!(got.id_token, d.id_token);
            assert_eq!(got.access_token, d.access_token);
            assert_eq!(got.refresh_token, d.refresh_token);
        }
        SessionLookup::Invalid { .. } if set.len() > MAX_CHUNKS => {}
        other => panic!("sealed session of {} chunks: {other:?}", set.len()),
    }

    let SealedSession::Sealed { sealed, chunks } = c.read(&headers) else {
        return;
    };
    // One character changed: the seal must not authenticate.
    let mut bytes = sealed.clone().into_bytes();
    let i = usize::from(pos) * bytes.len() / 256;
    let b = byte & 0x7f;
    if bytes[i] != b {
        bytes[i] = b;
        let tampered = text(&bytes);
        assert!(
            !matches!(c.unseal(&tampered, chunks), SessionLookup::Valid { .. }),
            "tampered seal accepted"
        );
    }
    // Truncated: likewise.
    let keep = usize::from(cut) * sealed.len() / 256;
    assert!(
        !matches!(
            c.unseal(&sealed[..keep], chunks),
            SessionLookup::Valid { .. }
        ),
        "truncated seal accepted"
    );
    // A chunk dropped: no session.
    if set.len() > 1 {
        let drop = usize::from(cut) % (set.len() - 1) + 1;
        let mut fewer = set.clone();
        fewer.remove(drop);
        assert!(
            !matches!(c.open(&request(&fewer)), SessionLookup::Valid { .. }),
            "session without chunk {drop} accepted"
        );
    }
}

fn login(data: &[u8]) {
    let c = &*CODEC;
    let fields: Vec<&[u8]> = data.splitn(6, |b| *b == 0).collect();
    let field = |i: usize| fields.get(i).map(|f| text(f)).unwrap_or_default();
    let state = field(0);
    let acr = field(5);
    let l = LoginState {
        state: state.clone(),
        nonce: field(1),
        verifier: field(2),
        rd: field(3),
        iat: now(),
        // A step-up login's level and age, as any bytes.
        max_age: (!acr.is_empty()).then_some(acr.len() as u64),
        acr: acr.split(' ').map(str::to_owned).collect(),
    };
    let Some(set) = c.seal_login(&l) else {
        return;
    };
    let headers = request(&[set]);
    let got = c
        .open_login(&headers, &state)
        .expect("own login attempt opens");
    assert_eq!(
        (got.state, got.nonce, got.verifier, got.rd, got.iat, got.acr, got.max_age),
        (l.state, l.nonce, l.verifier, l.rd, l.iat, l.acr, l.max_age)
    );
    let other = field(4);
    if other != state {
        assert!(
            c.open_login(&headers, &other).is_none(),
            "login attempt for {state:?} opened for {other:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        0 => raw_headers(rest),
        1 => chunked(rest),
        2 => round_trip(rest),
        _ => login(rest),
    }
});
