//! Request path normalization: the one function whose output is both matched against the
//! rules and forwarded to the upstream, so the two can never disagree.
//!
//! What it does, in order:
//! 1. refuses what has no safe meaning (encoded `/`, any backslash, control characters, bad
//!    percent-encoding, `;` path parameters unless allowed);
//! 2. decodes percent-encoded unreserved characters (`%61` -> `a`, `%2E` -> `.`) and writes the
//!    remaining escapes with upper-case hex;
//! 3. resolves `.` and `..` segments (refusing a `..` that would climb above the root) and
//!    collapses runs of `/`.
//!
//! The result is a fixed point: normalizing it again gives the same path.

use std::fmt;

use percent_encoding::{
    percent_decode_str, percent_encode, utf8_percent_encode, AsciiSet, CONTROLS, NON_ALPHANUMERIC,
};

/// Why a path was refused with 400.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRejection {
    /// The path does not start with `/` (for example the `*` of `OPTIONS *`).
    #[error("the path must start with '/'")]
    NotAbsolute,
    /// `%2F` in the path: upstreams disagree on whether it separates segments.
    #[error("the path contains an encoded '/'")]
    EncodedSlash,
    /// A literal or encoded backslash, which some servers treat as a separator.
    #[error("the path contains a backslash")]
    Backslash,
    /// A `;` path parameter (`/admin;x/`, `..;/`), refused unless `server.allow_path_params`.
    #[error("the path contains a ';' path parameter")]
    PathParameter,
    /// NUL or another control character, literal or encoded.
    #[error("the path contains a control character")]
    ControlCharacter,
    /// A `%` not followed by two hexadecimal digits.
    #[error("the path contains invalid percent-encoding")]
    InvalidPercentEncoding,
    /// A `..` segment that climbs above `/`.
    #[error("the path climbs above the root")]
    AboveRoot,
}

/// A path that went through [`normalize`]. It always starts with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath {
    /// What the upstream receives.
    path: String,
    /// What the rules see when it differs from `path`: with `allow_path_params`, each
    /// segment's `;parameters` are cut off so `/admin;x` is judged as `/admin`.
    matching: Option<String>,
}

impl NormalizedPath {
    /// The path the upstream receives.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The path the rules are matched against.
    pub fn for_matching(&self) -> &str {
        self.matching.as_deref().unwrap_or(&self.path)
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

/// Checks one byte (after decoding); unreserved characters always pass.
fn refuse(b: u8, allow_params: bool, encoded: bool) -> Result<(), PathRejection> {
    match b {
        b'/' if encoded => Err(PathRejection::EncodedSlash),
        b'\\' => Err(PathRejection::Backslash),
        b';' if !allow_params => Err(PathRejection::PathParameter),
        0..=0x1f | 0x7f => Err(PathRejection::ControlCharacter),
        _ => Ok(()),
    }
}

/// Every byte but the unreserved characters (`A-Z a-z 0-9 - . _ ~`): what stays an escape.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Checks and copies characters that were not percent-encoded: ASCII as it is, anything
/// else percent-encoded.
fn push_literal(out: &mut String, lit: &str, allow_params: bool) -> Result<(), PathRejection> {
    lit.bytes()
        .try_for_each(|b| refuse(b, allow_params, false))?;
    // Control characters were refused above, so this encodes exactly the non-ASCII bytes.
    out.extend(utf8_percent_encode(lit, CONTROLS));
    Ok(())
}

/// Normalizes a request path (without its query). See the module docs.
pub fn normalize(raw: &str, allow_params: bool) -> Result<NormalizedPath, PathRejection> {
    if !raw.starts_with('/') {
        return Err(PathRejection::NotAbsolute);
    }
    if is_plain(raw) {
        return Ok(NormalizedPath {
            path: raw.to_owned(),
            matching: None,
        });
    }
    let decoded = decode(raw, allow_params)?;
    let path = resolve_dots(&decoded, allow_params)?;
    let matching = (allow_params && path.contains(';')).then(|| without_params(&path));
    Ok(NormalizedPath { path, matching })
}

/// A path the two passes below would return unchanged, found in one scan: printable
/// ASCII without `%`, `\` or `;` (so nothing to decode, encode or refuse), no empty
/// segment but a trailing one (no `//`), and no `.` or `..` segment. Most requests take
/// this path and skip the passes.
fn is_plain(raw: &str) -> bool {
    let b = raw.as_bytes();
    // The start of the current segment, just after its `/`.
    let mut seg = 1;
    for i in 1..=b.len() {
        let end = i == b.len();
        if end || b[i] == b'/' {
            match &b[seg..i] {
                b"." | b".." => return false,
                b"" if !end => return false,
                _ => {}
            }
            seg = i + 1;
        } else if !matches!(b[i], 0x21..=0x7e) || matches!(b[i], b'%' | b'\\' | b';') {
            return false;
        }
    }
    true
}

/// Pass 1: decode and refuse. The escapes are found and checked here: `percent_decode`
/// passes a `%` without two hex digits through unchanged instead of reporting it, and its
/// output no longer tells an encoded `/` or `%` from a literal one.
fn decode(raw: &str, allow_params: bool) -> Result<String, PathRejection> {
    let mut decoded = String::with_capacity(raw.len());
    let mut start = 0;
    for (i, _) in raw.match_indices('%') {
        push_literal(&mut decoded, &raw[start..i], allow_params)?;
        let escape = raw
            .get(i..i + 3)
            .filter(|e| e.bytes().skip(1).all(|b| b.is_ascii_hexdigit()))
            .ok_or(PathRejection::InvalidPercentEncoding)?;
        for b in percent_decode_str(escape) {
            refuse(b, allow_params, true)?;
            decoded.extend(percent_encode(&[b], NOT_UNRESERVED));
        }
        start = i + 3;
    }
    push_literal(&mut decoded, &raw[start..], allow_params)?;
    Ok(decoded)
}

/// Pass 2: resolve dot segments and empty segments.
fn resolve_dots(decoded: &str, allow_params: bool) -> Result<String, PathRejection> {
    let mut out: Vec<&str> = Vec::new();
    let mut trailing_slash = false;
    // `decoded` starts with '/': the first split item is the empty string before it.
    let mut parts = decoded.split('/').skip(1).peekable();
    while let Some(seg) = parts.next() {
        let last = parts.peek().is_none();
        let bare = if allow_params {
            seg.split(';').next().unwrap_or(seg)
        } else {
            seg
        };
        if allow_params && bare != seg && (bare == "." || bare == "..") {
            // `..;x` would be `..` to servers that strip parameters.
            return Err(PathRejection::PathParameter);
        }
        match seg {
            "" | "." => trailing_slash = last,
            ".." => {
                if out.pop().is_none() {
                    return Err(PathRejection::AboveRoot);
                }
                trailing_slash = last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(decoded.len());
    for seg in &out {
        path.push('/');
        path.push_str(seg);
    }
    if path.is_empty() || trailing_slash {
        path.push('/');
    }
    Ok(path)
}

/// The path with each segment's `;parameters` cut off, as the rules see it.
fn without_params(path: &str) -> String {
    let mut m = String::with_capacity(path.len());
    for (n, seg) in path.split('/').enumerate() {
        if n > 0 {
            m.push('/');
        }
        m.push_str(seg.split(';').next().unwrap_or(seg));
    }
    m
}

#[cfg(test)]
mod tests;
