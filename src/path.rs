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

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

fn push_escaped(out: &mut String, b: u8) {
    out.push('%');
    out.push(HEX_UPPER[usize::from(b >> 4)] as char);
    out.push(HEX_UPPER[usize::from(b & 0x0f)] as char);
}

/// Checks one byte (after decoding) that is not an unreserved character.
fn refuse(b: u8, allow_params: bool, encoded: bool) -> Result<(), PathRejection> {
    match b {
        b'/' if encoded => Err(PathRejection::EncodedSlash),
        b'\\' => Err(PathRejection::Backslash),
        b';' if !allow_params => Err(PathRejection::PathParameter),
        0..=0x1f | 0x7f => Err(PathRejection::ControlCharacter),
        _ => Ok(()),
    }
}

/// Normalizes a request path (without its query). See the module docs.
pub fn normalize(raw: &str, allow_params: bool) -> Result<NormalizedPath, PathRejection> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathRejection::NotAbsolute);
    }

    // Pass 1: decode and refuse, byte by byte.
    let mut decoded = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex_value),
                bytes.get(i + 2).copied().and_then(hex_value),
            ) else {
                return Err(PathRejection::InvalidPercentEncoding);
            };
            let v = (hi << 4) | lo;
            if is_unreserved(v) {
                decoded.push(v as char);
            } else {
                refuse(v, allow_params, true)?;
                push_escaped(&mut decoded, v);
            }
            i += 3;
            continue;
        }
        refuse(b, allow_params, false)?;
        if b.is_ascii() {
            decoded.push(b as char);
        } else {
            push_escaped(&mut decoded, b);
        }
        i += 1;
    }

    // Pass 2: resolve dot segments and empty segments.
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

    let matching = if allow_params && path.contains(';') {
        let mut m = String::with_capacity(path.len());
        for (n, seg) in path.split('/').enumerate() {
            if n > 0 {
                m.push('/');
            }
            m.push_str(seg.split(';').next().unwrap_or(seg));
        }
        Some(m)
    } else {
        None
    };
    Ok(NormalizedPath { path, matching })
}

#[cfg(test)]
mod tests;
