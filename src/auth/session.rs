//! Browser sessions in encrypted cookies.
//!
//! The session (tokens, expiry, a random session id) is serialized, encrypted and
//! authenticated with AES-256-GCM by the `cookie` crate's private jar, under a key derived
//! from `session.secret`, the issuer and the client id. When the result is larger than
//! one cookie may be, it is split: `<name>=<count>.<part 0>`, `<name>_1=<part 1>`, ...
//! Because the whole value is encrypted once, a tampered, truncated, reordered or swapped
//! chunk fails authentication: the request simply has no session.
//!
//! Logout revokes the session id. With the cookie store that revocation is held in this
//! process until the session would have expired: a replayed cookie is refused by the
//! instance that handled the logout, not by other replicas (use the shared store for that).
//! With `session.state_dir` every revocation (logouts, back-channel logouts, used login
//! states and logout tokens) is also written to [`journal`] and on disk before the call
//! returns, so a restart forgets none of them; a logout whose record cannot be written is
//! answered 503 (the user learns that it did not stick) rather than passed over.
//!
//! Each login attempt keeps its state, nonce and PKCE verifier in its own short-lived
//! cookie, `<name>_login_<first 16 characters of the state>`, so parallel logins in two
//! tabs do not disturb each other.

use std::io;
use std::path::Path;
use std::time::Duration;

use cookie::{Cookie, CookieJar, Key, SameSite as CookieSameSite};
use http::header::{self, HeaderMap, HeaderValue};
use quick_cache::sync::{Cache, EntryAction, EntryResult};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::config::{SameSite, SessionSettings};

pub mod journal;
use journal::{Entry, Journal};

/// Largest cookie value written; browsers allow about 4096 bytes per cookie with its name
/// and attributes.
const CHUNK: usize = 3800;
/// More chunks than this is not a session of ours.
const MAX_CHUNKS: usize = 12;
/// How long a login attempt may take.
pub const LOGIN_TTL: Duration = Duration::from_secs(600);
/// Most revoked session ids kept (the cache evicts beyond it).
const MAX_REVOKED: usize = 100_000;
/// Most entries in each back-channel logout record (ended provider sessions, logged-out
/// subjects, used logout-token ids).
const MAX_ENDED: usize = 100_000;

/// What a session cookie holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionData {
    /// Random session id; what logout revokes.
    pub sid: String,
    /// Created (seconds since the epoch).
    pub iat: u64,
    /// The session ends here, whatever the tokens say (`session.lifetime`).
    pub exp: u64,
    pub id_token: String,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    /// When the access token expires; refresh is due after it.
    pub at_exp: Option<u64>,
}

/// What the cookie holds with the Redis store: which session, nothing else.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRef {
    /// The session id (the key in the store).
    #[serde(rename = "ref")]
    pub sid: String,
    pub exp: u64,
}

/// What a login-attempt cookie holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoginState {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// Where to go after the login (already validated).
    pub rd: String,
    pub iat: u64,
    /// Step-up: the `acr` values asked for; the ID token must carry one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub acr: Vec<String>,
    /// Step-up: the `max_age` asked for (seconds); the ID token's `auth_time` must be
    /// within it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
}

/// The outcome of reading the session cookies.
#[derive(Debug)]
pub enum SessionLookup {
    /// No session cookie.
    None,
    /// Cookies present but unusable (tampered, expired, revoked): clear them.
    Invalid { chunks: usize },
    Valid {
        data: SessionData,
        chunks: usize,
        /// Sealed with one of `session.previous_secrets`: seal it again with the current
        /// secret.
        stale: bool,
    },
}

/// Session ids that must not be accepted again (logged out), each until the session
/// would have expired anyway: an entry holds its expiry and counts as absent after it.
/// Outlives configuration reloads.
///
/// Back-channel logouts add three records, each bounded and each entry with its own
/// expiry: the provider's session ids (`sid`) that ended, the subjects logged out with
/// the time of that logout, and the `jti`s of logout tokens already used.
pub struct Revocations {
    ids: Cache<String, u64>,
    /// Provider `sid` -> until when the record is kept.
    provider_sids: Cache<String, u64>,
    /// `sub` -> (logout time, until when the record is kept).
    subjects: Cache<String, (u64, u64)>,
    /// Logout-token `jti` -> until when it counts as used.
    logout_jtis: Cache<String, u64>,
    /// `session.state_dir`: every entry is also written here.
    journal: Option<Journal>,
}

impl Default for Revocations {
    fn default() -> Self {
        Revocations {
            ids: Cache::new(MAX_REVOKED),
            provider_sids: Cache::new(MAX_ENDED),
            subjects: Cache::new(MAX_ENDED),
            logout_jtis: Cache::new(MAX_ENDED),
            journal: None,
        }
    }
}

/// Durability (`session.state_dir`).
impl Revocations {
    /// The revocations kept in `dir`: the journal is read (expired entries and malformed
    /// lines are skipped, the latter with a warning), rewritten with only the live entries,
    /// and every later entry is appended to it.
    pub fn open(dir: &Path) -> io::Result<Revocations> {
        let mut r = Revocations::default();
        let loaded = journal::read(&dir.join(journal::FILE), now())?;
        if loaded.malformed > 0 {
            tracing::warn!(
                file = %dir.join(journal::FILE).display(),
                lines = loaded.malformed,
                "skipped malformed lines of the revocations file"
            );
        }
        for e in loaded.live {
            r.apply(e);
        }
        let j = Journal::create(dir, r.live_entries().into_iter())?;
        tracing::info!(
            file = %j.path().display(),
            live = r.ids.len() + r.provider_sids.len() + r.subjects.len() + r.logout_jtis.len(),
            expired = loaded.expired,
            "revocations loaded"
        );
        r.journal = Some(j);
        Ok(r)
    }

    /// Puts a loaded entry into memory (later lines of one id win where they extend it).
    fn apply(&self, e: Entry) {
        match e {
            Entry::Id(id, u) => {
                let u = self.ids.get(&id).map_or(u, |old| old.max(u));
                self.ids.insert(id, u);
            }
            Entry::ProviderSid(id, u) => self.end_provider_session_here(&id, u),
            Entry::Subject(id, u, at) => self.end_subject_here(&id, at, u),
            Entry::Jti(id, u) => {
                let u = self.logout_jtis.get(&id).map_or(u, |old| old.max(u));
                self.logout_jtis.insert(id, u);
            }
        }
    }

    /// Every entry still in force, as the journal writes it.
    fn live_entries(&self) -> Vec<Entry> {
        let t = now();
        let mut out = Vec::new();
        out.extend(
            self.ids
                .iter()
                .filter(|(_, u)| *u > t)
                .map(|(k, u)| Entry::Id(k, u)),
        );
        out.extend(
            self.provider_sids
                .iter()
                .filter(|(_, u)| *u > t)
                .map(|(k, u)| Entry::ProviderSid(k, u)),
        );
        out.extend(
            self.subjects
                .iter()
                .filter(|(_, (_, u))| *u > t)
                .map(|(k, (at, u))| Entry::Subject(k, u, at)),
        );
        out.extend(
            self.logout_jtis
                .iter()
                .filter(|(_, u)| *u > t)
                .map(|(k, u)| Entry::Jti(k, u)),
        );
        out
    }

    /// Writes an entry that is already in memory to the journal, if there is one; the
    /// error is logged here.
    fn persist(&self, e: Entry) -> io::Result<()> {
        let Some(j) = &self.journal else {
            return Ok(());
        };
        match j.append(&e) {
            Ok(false) => Ok(()),
            Ok(true) => {
                if let Err(err) = j.compact(self.live_entries().into_iter()) {
                    // The entry itself is on disk: only the file stays longer.
                    tracing::warn!(file = %j.path().display(), error = %err, "could not compact the revocations file");
                }
                Ok(())
            }
            Err(err) => {
                tracing::error!(file = %j.path().display(), error = %err, "could not write a revocation to session.state_dir; it is in force until a restart only");
                Err(err)
            }
        }
    }
}

impl Revocations {
    /// Refuses `sid` until `exp`; with a state directory, on disk before this returns.
    /// `Err`: held in memory, but a restart would forget it (the error is logged).
    pub fn revoke(&self, sid: &str, exp: u64) -> io::Result<()> {
        self.ids.insert(sid.to_owned(), exp);
        self.persist(Entry::Id(sid.to_owned(), exp))
    }

    pub fn contains(&self, sid: &str) -> bool {
        self.ids.get(sid).is_some_and(|exp| exp > now())
    }

    /// Marks a one-time value (a login state) used; false if it was used already. Atomic:
    /// of concurrent callers for one id, exactly one gets true.
    pub fn first_use(&self, id: &str, exp: u64) -> bool {
        // A write failure is logged; the value stays used until a restart, and a login
        // state is also bound to its short-lived cookie.
        mark_once(&self.ids, id, exp) && {
            let _ = self.persist(Entry::Id(id.to_owned(), exp));
            true
        }
    }
}

/// Marks `id` in `set` until `exp`; false if it is marked and not expired. Atomic: a zero
/// timeout makes a caller that finds another one inserting the same id lose at once.
pub(crate) fn mark_once<K, Q>(set: &Cache<K, u64>, id: &Q, exp: u64) -> bool
where
    K: Eq + std::hash::Hash + Clone,
    Q: std::hash::Hash + quick_cache::Equivalent<K> + ToOwned<Owned = K> + ?Sized,
{
    let t = now();
    let entry = set.entry(id, Some(Duration::ZERO), |_, e| {
        if *e > t {
            EntryAction::Retain(())
        } else {
            EntryAction::ReplaceWithGuard
        }
    });
    match entry {
        EntryResult::Vacant(guard) | EntryResult::Replaced(guard, _) => {
            // Err only when a plain insert of the same id came in between: marked all the same.
            let _ = guard.insert(exp);
            true
        }
        EntryResult::Retained(()) | EntryResult::Removed(..) | EntryResult::Timeout => false,
    }
}

/// Back-channel logout (OpenID Connect Back-Channel Logout 1.0): what the provider ended.
impl Revocations {
    /// Ends every session created with this provider session id, until `keep_until`; with a
    /// state directory, on disk before this returns (`Err`: in memory only, logged).
    pub fn end_provider_session(&self, sid: &str, keep_until: u64) -> io::Result<()> {
        self.end_provider_session_here(sid, keep_until);
        self.persist(Entry::ProviderSid(sid.to_owned(), keep_until))
    }

    fn end_provider_session_here(&self, sid: &str, keep_until: u64) {
        let entry = self.provider_sids.entry(sid, None, |_, until| {
            *until = (*until).max(keep_until);
            EntryAction::Retain(())
        });
        if let EntryResult::Vacant(guard) = entry {
            let _ = guard.insert(keep_until);
        }
    }

    /// Ends every session of `sub` created at or before `at`, remembered until
    /// `keep_until`. A later logout of the same subject moves the time forward, never
    /// back. Durable like [`Revocations::end_provider_session`].
    pub fn end_subject(&self, sub: &str, at: u64, keep_until: u64) -> io::Result<()> {
        self.end_subject_here(sub, at, keep_until);
        self.persist(Entry::Subject(sub.to_owned(), keep_until, at))
    }

    fn end_subject_here(&self, sub: &str, at: u64, keep_until: u64) {
        let entry = self.subjects.entry(sub, None, |_, (t, until)| {
            *t = (*t).max(at);
            *until = (*until).max(keep_until);
            EntryAction::Retain(())
        });
        if let EntryResult::Vacant(guard) = entry {
            let _ = guard.insert((at, keep_until));
        }
    }

    /// Is a session over: its own id revoked, its provider session ended, or its subject
    /// logged out at or after the session was created (`session_iat`)?
    pub fn is_ended(
        &self,
        session_id: &str,
        provider_sid: Option<&str>,
        sub: &str,
        session_iat: u64,
    ) -> bool {
        if self.contains(session_id) {
            return true;
        }
        let t = now();
        if provider_sid.is_some_and(|sid| self.provider_sids.get(sid).is_some_and(|u| u > t)) {
            return true;
        }
        self.subjects
            .get(sub)
            .is_some_and(|(at, until)| until > t && session_iat <= at)
    }

    /// Un-marks a logout token whose logout could not be recorded, so that the provider's
    /// retry of it is accepted.
    pub fn forget_logout_token(&self, jti: &str) {
        self.logout_jtis.remove(jti);
    }

    /// Marks a logout token's `jti` used until `exp`; false if it was used already.
    /// Atomic, like [`Revocations::first_use`].
    pub fn first_logout_token(&self, jti: &str, exp: u64) -> bool {
        // Logged on failure; used until a restart all the same.
        mark_once(&self.logout_jtis, jti, exp) && {
            let _ = self.persist(Entry::Jti(jti.to_owned(), exp));
            true
        }
    }
}

/// Back-channel logout, seen from one session.
impl SessionCodec {
    /// Is this session over: revoked here, or ended by the provider (its `sid`, or a
    /// logout of its subject after it was created)? `provider_sid` and `sub` are the
    /// claims of the ID token the session holds.
    pub fn is_ended(&self, data: &SessionData, provider_sid: Option<&str>, sub: &str) -> bool {
        self.revoked
            .is_ended(&data.sid, provider_sid, sub, data.iat)
    }
}

/// The session cookies of a request, re-assembled but still sealed.
#[derive(Debug)]
pub enum SealedSession {
    None,
    Malformed { chunks: usize },
    Sealed { sealed: String, chunks: usize },
}

/// Seals and opens session and login cookies.
pub struct SessionCodec {
    key: Key,
    /// Keys of `session.previous_secrets`, tried in order when `key` cannot open a value.
    previous: Vec<Key>,
    settings: SessionSettings,
    revoked: std::sync::Arc<Revocations>,
}

use crate::unix_now as now;

/// Cookies of a request, by name (the first of duplicates wins).
pub fn request_cookies(headers: &HeaderMap) -> RequestCookies<'_> {
    RequestCookies(
        request_cookie_pairs(headers)
            .map(|(name, value, _)| (name, value))
            .collect(),
    )
}

/// Every `name=value` pair of every `Cookie` header, in order, as [`cookie_pairs`] gives
/// them; a header that is not UTF-8 contributes none.
pub fn request_cookie_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str, &str)> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(cookie_text)
        .flat_map(cookie_pairs)
}

/// A request's cookies in the order they were sent.
///
/// Looked up by a linear search, not a hash map: a request carries a handful of cookies
/// and the gateway asks for at most `MAX_CHUNKS` names, so hashing every name (and
/// seeding a hasher per request) cost more than it saved; with the most cookies a 16 KB
/// head can hold, the search is still cheaper than filling a map would be.
pub struct RequestCookies<'a>(Vec<(&'a str, &'a str)>);

impl<'a> RequestCookies<'a> {
    /// The value of the first cookie called `name`.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.0.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
    }
}

/// One `Cookie` header as text, or `None` if it is not UTF-8 (such a header is ignored,
/// and not forwarded either).
///
/// UTF-8 is all that matters here, not `to_str`'s byte-by-byte visible-ASCII test. The
/// check runs twice per session request (the session lookup, then the removal of the
/// gateway's cookies before forwarding) on a header that holds a multi-kilobyte sealed
/// session, so it is `simdutf8`'s vectorized validator, which accepts and rejects
/// exactly what `std::str::from_utf8` does at about a third of its instructions on such
/// a header (`benches/load/instructions.sh`, session: see docs/performance.md).
fn cookie_text(v: &HeaderValue) -> Option<&str> {
    simdutf8::basic::from_utf8(v.as_bytes()).ok()
}

/// The `name=value` pairs of one `Cookie` header (RFC 6265 §4.2.1), trimmed, with the raw
/// pair; a pair without `=` or with an empty name is skipped (as the `cookie` crate's
/// parser skips it).
///
/// Hand-written on purpose: this runs twice per request on a header that holds a
/// multi-kilobyte session cookie, and `cookie::Cookie::split_parse` scans every cookie
/// twice (once to split the header, once more for attributes a request cookie never
/// has). Measured with `bash benches/load/instructions.sh`: about 6 600 more instructions
/// per session request (+8 %) than this single pass. The `;` are found with `memchr`'s
/// vectorized search instead of `str::split`'s byte-at-a-time one.
fn cookie_pairs(header: &str) -> impl Iterator<Item = (&str, &str, &str)> {
    let mut start = 0;
    memchr::memchr_iter(b';', header.as_bytes())
        .chain(std::iter::once(header.len()))
        .filter_map(move |end| {
            // `;` is ASCII, so both ends are character boundaries.
            let pair = header.get(start..end)?.trim();
            start = end + 1;
            let (name, value) = pair.split_once('=')?;
            let name = name.trim();
            (!name.is_empty()).then(|| (name, value.trim(), pair))
        })
}

impl SessionCodec {
    pub fn new(
        settings: &SessionSettings,
        issuer: &str,
        client_id: &str,
        revoked: std::sync::Arc<Revocations>,
    ) -> SessionCodec {
        let derive = |secret: &str| {
            let mut h = Sha512::new();
            h.update(b"portcullis session key v1\0");
            h.update(secret.as_bytes());
            h.update([0]);
            h.update(issuer.as_bytes());
            h.update([0]);
            h.update(client_id.as_bytes());
            // 64 bytes of key material, as `Key::derive_from` expects at least 32.
            Key::derive_from(&h.finalize())
        };
        SessionCodec {
            key: derive(settings.secret.expose()),
            previous: settings
                .previous_secrets
                .iter()
                .map(|s| derive(s.expose()))
                .collect(),
            settings: settings.clone(),
            revoked,
        }
    }

    pub fn settings(&self) -> &SessionSettings {
        &self.settings
    }

    fn encrypt(&self, name: &str, plain: String) -> Option<String> {
        let mut jar = CookieJar::new();
        jar.private_mut(&self.key)
            .add(Cookie::new(name.to_owned(), plain));
        jar.get(name).map(|c| c.value().to_owned())
    }

    fn decrypt(&self, name: &str, sealed: &str) -> Option<String> {
        self.decrypt_any(name, sealed).map(|(plain, _)| plain)
    }

    /// Opens a value sealed with the current key or, failing that, with a previous one;
    /// says which (`true` = a previous key: the value should be sealed again).
    fn decrypt_any(&self, name: &str, sealed: &str) -> Option<(String, bool)> {
        let jar = CookieJar::new();
        let open = |key: &Key| {
            jar.private(key)
                .decrypt(Cookie::new(name.to_owned(), sealed.to_owned()))
                .map(|c| c.value().to_owned())
        };
        if let Some(plain) = open(&self.key) {
            return Some((plain, false));
        }
        self.previous
            .iter()
            .find_map(open)
            .map(|plain| (plain, true))
    }

    fn cookie(
        &self,
        name: String,
        value: String,
        max_age: Duration,
        same_site: SameSite,
    ) -> String {
        let mut c = Cookie::new(name, value);
        c.set_path("/");
        c.set_http_only(true);
        c.set_secure(self.settings.secure);
        c.set_same_site(match same_site {
            SameSite::Lax => CookieSameSite::Lax,
            SameSite::Strict => CookieSameSite::Strict,
            SameSite::None => CookieSameSite::None,
        });
        c.set_max_age(cookie::time::Duration::seconds(
            i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX),
        ));
        c.to_string()
    }

    fn removal(&self, name: String) -> String {
        let mut c = Cookie::new(name, "");
        c.set_path("/");
        c.set_http_only(true);
        c.set_secure(self.settings.secure);
        c.make_removal();
        c.to_string()
    }

    fn chunk_name(&self, i: usize) -> String {
        if i == 0 {
            self.settings.cookie_name.clone()
        } else {
            format!("{}_{i}", self.settings.cookie_name)
        }
    }

    /// `Set-Cookie` values for a session; `previous_chunks` more chunks are cleared.
    pub fn seal(&self, data: &SessionData, previous_chunks: usize) -> Vec<String> {
        match serde_json::to_string(data) {
            Ok(json) => self.seal_json(json, data.exp, previous_chunks),
            Err(_) => Vec::new(),
        }
    }

    /// `Set-Cookie` values for a session kept in the store: the cookie names it only.
    pub fn seal_ref(&self, r: &SessionRef, previous_chunks: usize) -> Vec<String> {
        match serde_json::to_string(r) {
            Ok(json) => self.seal_json(json, r.exp, previous_chunks),
            Err(_) => Vec::new(),
        }
    }

    /// Opens a store cookie's value; `true` = sealed with a previous secret.
    pub fn open_ref(&self, sealed: &str) -> Option<(SessionRef, bool)> {
        let (json, stale) = self.decrypt_any(&self.settings.cookie_name, sealed)?;
        let r: SessionRef = serde_json::from_str(&json).ok()?;
        (r.exp > now()).then_some((r, stale))
    }

    /// A session sealed for the store, bound to its id: a value copied to another key does
    /// not open.
    pub fn seal_stored(&self, data: &SessionData) -> Option<String> {
        let json = serde_json::to_string(data).ok()?;
        self.encrypt(&format!("store:{}", data.sid), json)
    }

    /// Opens a value of the store; `None` when it is not a session of id `sid` under the
    /// current or a previous secret, or when it expired or was revoked.
    pub fn open_stored(&self, sid: &str, value: &str) -> Option<SessionData> {
        let (json, _) = self.decrypt_any(&format!("store:{sid}"), value)?;
        let data: SessionData = serde_json::from_str(&json).ok()?;
        (data.sid == sid && data.exp > now() && !self.is_revoked(&data.sid)).then_some(data)
    }

    fn seal_json(&self, json: String, exp: u64, previous_chunks: usize) -> Vec<String> {
        let Some(sealed) = self.encrypt(&self.settings.cookie_name, json) else {
            return Vec::new();
        };
        let parts: Vec<&str> = sealed
            .as_bytes()
            .chunks(CHUNK)
            .map(|c| std::str::from_utf8(c).unwrap_or(""))
            .collect();
        let max_age = Duration::from_secs(exp.saturating_sub(now()));
        let mut out = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let value = if i == 0 {
                format!("{}.{part}", parts.len())
            } else {
                (*part).to_owned()
            };
            out.push(self.cookie(self.chunk_name(i), value, max_age, self.settings.same_site));
        }
        for i in parts.len()..previous_chunks {
            out.push(self.removal(self.chunk_name(i)));
        }
        out
    }

    /// `Set-Cookie` values that remove a session of `chunks` cookies.
    pub fn clear(&self, chunks: usize) -> Vec<String> {
        (0..chunks.max(1))
            .map(|i| self.removal(self.chunk_name(i)))
            .collect()
    }

    /// Reads and checks the session cookies.
    pub fn open(&self, headers: &HeaderMap) -> SessionLookup {
        match self.read(headers) {
            SealedSession::None => SessionLookup::None,
            SealedSession::Malformed { chunks } => SessionLookup::Invalid { chunks },
            SealedSession::Sealed { sealed, chunks } => self.unseal(&sealed, chunks),
        }
    }

    /// Re-assembles the sealed session value from its cookies, without decrypting it.
    pub fn read(&self, headers: &HeaderMap) -> SealedSession {
        let cookies = request_cookies(headers);
        let Some(first) = cookies.get(self.settings.cookie_name.as_str()) else {
            return SealedSession::None;
        };
        let malformed = |chunks| SealedSession::Malformed { chunks };
        let Some((count, part0)) = first.split_once('.') else {
            return malformed(1);
        };
        let Ok(count) = count.parse::<usize>() else {
            return malformed(1);
        };
        if count == 0 || count > MAX_CHUNKS {
            return malformed(1);
        }
        let mut sealed = String::with_capacity(count * CHUNK);
        sealed.push_str(part0);
        for i in 1..count {
            match cookies.get(self.chunk_name(i).as_str()) {
                Some(p) => sealed.push_str(p),
                None => return malformed(count),
            }
        }
        SealedSession::Sealed {
            sealed,
            chunks: count,
        }
    }

    /// Decrypts and checks a sealed session value.
    pub fn unseal(&self, sealed: &str, count: usize) -> SessionLookup {
        let invalid = |chunks| SessionLookup::Invalid { chunks };
        let Some((json, stale)) = self.decrypt_any(&self.settings.cookie_name, sealed) else {
            return invalid(count);
        };
        let Ok(data) = serde_json::from_str::<SessionData>(&json) else {
            return invalid(count);
        };
        if data.exp <= now() || self.is_revoked(&data.sid) {
            return invalid(count);
        }
        SessionLookup::Valid {
            data,
            chunks: count,
            stale,
        }
    }

    /// Makes a session unusable on this instance until it would have expired (and across
    /// restarts with `session.state_dir`; `Err`: that record could not be written).
    pub fn revoke(&self, sid: &str, exp: u64) -> io::Result<()> {
        self.revoked.revoke(sid, exp)
    }

    pub fn is_revoked(&self, sid: &str) -> bool {
        self.revoked.contains(sid)
    }

    fn login_name(&self, state: &str) -> String {
        let short: String = state
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(16)
            .collect();
        format!("{}_login_{short}", self.settings.cookie_name)
    }

    /// The `Set-Cookie` for a login attempt. Always `SameSite=Lax`: the provider sends the
    /// browser back with a cross-site top-level GET.
    pub fn seal_login(&self, login: &LoginState) -> Option<String> {
        let name = self.login_name(&login.state);
        let sealed = self.encrypt(&name, serde_json::to_string(login).ok()?)?;
        Some(self.cookie(name, sealed, LOGIN_TTL, SameSite::Lax))
    }

    /// The login attempt for this `state`, if its cookie is present, intact, fresh and for
    /// exactly this state.
    pub fn open_login(&self, headers: &HeaderMap, state: &str) -> Option<LoginState> {
        let name = self.login_name(state);
        let cookies = request_cookies(headers);
        let json = self.decrypt(&name, cookies.get(name.as_str())?)?;
        let login: LoginState = serde_json::from_str(&json).ok()?;
        let fresh = now().saturating_sub(login.iat) <= LOGIN_TTL.as_secs();
        (fresh && bool::from(login.state.as_bytes().ct_eq(state.as_bytes()))).then_some(login)
    }

    pub fn clear_login(&self, state: &str) -> String {
        self.removal(self.login_name(state))
    }
}

/// A random URL-safe token of `bytes` random bytes.
pub fn random_token(bytes: usize) -> String {
    use base64::Engine;
    let mut buf = vec![0u8; bytes];
    rand::Rng::fill(&mut rand::rng(), buf.as_mut_slice());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests;
