//! Method overrides, read the way upstream frameworks read them.
//!
//! Rails (Rack::MethodOverride), Laravel, Symfony and plain PHP let a `POST` stand for
//! another method through a `_method` parameter: from the query, from a form body
//! (`application/x-www-form-urlencoded` or `multipart/form-data`), and in Laravel from a
//! JSON body. They decode names and values, ignore case, take repeated keys in their own
//! ways (first, last, or as an array), and PHP rewrites parameter names (a leading space is
//! dropped, ` ` `.` and an unmatched `[` become `_`, `name[...]` is an array, and the name
//! ends at a NUL byte). A request is therefore judged for its own method and for every
//! method any of those readings could produce: every value of every key that reads as
//! `_method`.
//!
//! Header overrides (`X-HTTP-Method-Override` and kin) are never judged: they are removed
//! before forwarding, in every spelling (`forward::headers`).

use http::header::{HeaderMap, CONTENT_TYPE};
use http::Method;
use http_body_util::{Either, Full};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;

use crate::forward::upstream::UpstreamBody;

/// The largest body read to look for `_method` (only `POST` form and JSON bodies on paths
/// where the method changes the rule). A larger one is refused with 413.
pub const MAX_INSPECTED_BODY: usize = 1024 * 1024;

/// Why overrides could not be read. Each is a 400 (or 413), never forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OverrideError {
    /// A `_method` value that is not an HTTP method token (after decoding and trimming).
    #[error("invalid _method value")]
    InvalidValue,
    /// A multipart body whose parts cannot be told apart.
    #[error("malformed multipart body")]
    Multipart,
    /// A body to be read is larger than [`MAX_INSPECTED_BODY`] (413).
    #[error("the body is too large to be judged for a method override")]
    TooLarge,
    /// The client's body broke off while it was read.
    #[error("the request body could not be read")]
    Unreadable,
}

/// Reads a body that may carry `_method`, up to [`MAX_INSPECTED_BODY`].
pub async fn read_body<B>(body: B) -> Result<bytes::Bytes, OverrideError>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use http_body_util::BodyExt;
    match http_body_util::Limited::new(body, MAX_INSPECTED_BODY)
        .collect()
        .await
    {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(OverrideError::TooLarge),
        Err(_) => Err(OverrideError::Unreadable),
    }
}

/// The body phase: on a path where the method changes the rule (`sensitive`), a `POST`
/// form, multipart or JSON body is read (up to [`MAX_INSPECTED_BODY`]) and every method
/// its `_method` asks for is returned, to be judged too; the bytes read are what is
/// forwarded. Everywhere else the body streams untouched.
pub async fn inspect(
    req: http::Request<hyper::body::Incoming>,
    sensitive: bool,
) -> Result<(http::Request<UpstreamBody>, Vec<Method>), OverrideError> {
    let Some(kind) = body_kind(req.method(), req.headers()).filter(|_| sensitive) else {
        return Ok((req.map(Either::Left), Vec::new()));
    };
    let (parts, body) = req.into_parts();
    let bytes = read_body(body).await?;
    let methods = from_body(&kind, &bytes)?;
    Ok((
        http::Request::from_parts(parts, Either::Right(Full::new(bytes))),
        methods,
    ))
}

/// Does this (decoded) parameter name read as `_method` in some framework?
pub fn is_override_key(name: &str) -> bool {
    // PHP ends the name at a NUL byte and drops leading spaces.
    let name = name.split('\0').next().unwrap_or("");
    let name = name.trim_start_matches(' ');
    // `_method[]`, `_method[x]`: an array named `_method` (PHP, Rack).
    let base = match name.find('[') {
        Some(i) if name[i..].contains(']') => &name[..i],
        _ => name,
    };
    base.len() == 7
        && base.bytes().zip(b"_method").all(|(a, b)| {
            let a = match a {
                b' ' | b'.' | b'[' => b'_',
                a => a.to_ascii_lowercase(),
            };
            a == *b
        })
}

/// The method a `_method` value asks for; `Ok(None)` for an empty value (ignored by every
/// framework).
fn method_of(value: &str) -> Result<Option<Method>, OverrideError> {
    let v = value.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\0');
    if v.is_empty() {
        return Ok(None);
    }
    Method::from_bytes(v.to_ascii_uppercase().as_bytes())
        .map(Some)
        .map_err(|_| OverrideError::InvalidValue)
}

fn push(out: &mut Vec<Method>, value: &str) -> Result<(), OverrideError> {
    if let Some(m) = method_of(value)? {
        if !out.contains(&m) {
            out.push(m);
        }
    }
    Ok(())
}

/// Every method the query's `_method` parameters ask for, decoded as a form.
pub fn from_query(query: Option<&str>) -> Result<Vec<Method>, OverrideError> {
    let mut out = Vec::new();
    if let Some(q) = query {
        // Cheap test first: no `method` anywhere (in any case or encoding) means none.
        if q.bytes().any(|b| b == b'm' || b == b'M' || b == b'%') {
            from_form(q.as_bytes(), &mut out)?;
        }
    }
    Ok(out)
}

fn from_form(bytes: &[u8], out: &mut Vec<Method>) -> Result<(), OverrideError> {
    for (k, v) in form_urlencoded::parse(bytes) {
        if is_override_key(&k) {
            push(out, &v)?;
        }
    }
    Ok(())
}

/// A request body a framework would read `_method` from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyKind {
    Form,
    Multipart { boundary: String },
    Json,
}

/// The kind of a `POST` body that can carry `_method`, from its `Content-Type`.
pub fn body_kind(method: &Method, headers: &HeaderMap) -> Option<BodyKind> {
    if method != Method::POST {
        return None;
    }
    let ct = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let mut parts = ct.split(';');
    let essence = parts.next()?.trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/x-www-form-urlencoded" => Some(BodyKind::Form),
        "multipart/form-data" => {
            let boundary = parts.find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("boundary")
                    .then(|| v.trim().trim_matches('"').to_owned())
            });
            // Without a boundary nobody can read the parts; the framework sees none.
            Some(BodyKind::Multipart {
                boundary: boundary.unwrap_or_default(),
            })
        }
        e if e == "application/json" || (e.starts_with("application/") && e.ends_with("+json")) => {
            Some(BodyKind::Json)
        }
        _ => None,
    }
}

/// Every method a body's `_method` fields ask for.
pub fn from_body(kind: &BodyKind, body: &[u8]) -> Result<Vec<Method>, OverrideError> {
    let mut out = Vec::new();
    match kind {
        BodyKind::Form => from_form(body, &mut out)?,
        BodyKind::Multipart { boundary } => from_multipart(boundary, body, &mut out)?,
        // Invalid JSON gives no parameters to any framework (Laravel reads null).
        BodyKind::Json => {
            if let Ok(JsonOverrides(values)) = serde_json::from_slice::<JsonOverrides>(body) {
                for v in values {
                    push(&mut out, &v)?;
                }
            }
        }
    }
    Ok(out)
}

/// The fields of a `multipart/form-data` body (RFC 7578) that read as `_method`.
fn from_multipart(boundary: &str, body: &[u8], out: &mut Vec<Method>) -> Result<(), OverrideError> {
    if boundary.is_empty() || boundary.len() > 200 {
        return Err(OverrideError::Multipart);
    }
    let delim = format!("--{boundary}");
    let text = String::from_utf8_lossy(body);
    let mut sections = text.split(delim.as_str());
    // Before the first delimiter: the preamble, ignored.
    sections.next();
    for section in sections {
        if section.starts_with("--") {
            return Ok(()); // the closing delimiter
        }
        // Transport padding (white space) may follow a delimiter.
        let section = section.trim_start_matches([' ', '\t']);
        let section = section
            .strip_prefix("\r\n")
            .or_else(|| section.strip_prefix('\n'))
            .ok_or(OverrideError::Multipart)?;
        let (head, value) = section
            .split_once("\r\n\r\n")
            .or_else(|| section.split_once("\n\n"))
            .ok_or(OverrideError::Multipart)?;
        let value = value
            .strip_suffix("\r\n")
            .or_else(|| value.strip_suffix('\n'))
            .unwrap_or(value);
        for line in head.lines() {
            let Some((name, params)) = line.split_once(':') else {
                continue;
            };
            if !name.trim().eq_ignore_ascii_case("content-disposition") {
                continue;
            }
            for p in params.split(';').skip(1) {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                let k = k.trim().to_ascii_lowercase();
                if k == "name" || k == "name*" {
                    let v = v.trim().trim_matches('"');
                    let v = v.rsplit("''").next().unwrap_or(v);
                    let decoded = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
                    if is_override_key(v) || is_override_key(&decoded) {
                        push(out, value)?;
                    }
                }
            }
        }
    }
    // No closing delimiter: frameworks disagree on what such a body holds.
    Err(OverrideError::Multipart)
}

// === impl JsonOverrides ===

/// The string values of a JSON object's top-level keys that read as `_method` (all of
/// them, whichever a parser would keep of repeated keys).
struct JsonOverrides(Vec<String>);

impl<'de> Deserialize<'de> for JsonOverrides {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = JsonOverrides;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonOverrides, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            if is_override_key(&k) {
                match map.next_value::<serde_json::Value>()? {
                    serde_json::Value::String(s) => out.push(s),
                    // Laravel reads `{"_method": ["DELETE"]}` as an array: judge its strings.
                    serde_json::Value::Array(a) => {
                        out.extend(a.into_iter().filter_map(|v| v.as_str().map(str::to_owned)))
                    }
                    _ => {}
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(JsonOverrides(out))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<JsonOverrides, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(JsonOverrides(Vec::new()))
    }

    fn visit_str<E>(self, _: &str) -> Result<JsonOverrides, E> {
        Ok(JsonOverrides(Vec::new()))
    }

    fn visit_bool<E>(self, _: bool) -> Result<JsonOverrides, E> {
        Ok(JsonOverrides(Vec::new()))
    }

    fn visit_i64<E>(self, _: i64) -> Result<JsonOverrides, E> {
        Ok(JsonOverrides(Vec::new()))
    }

    fn visit_u64<E>(self, _: u64) -> Result<JsonOverrides, E> {
        Ok(JsonOverrides(Vec::new()))
    }

    fn visit_f64<E>(self, _: f64) -> Result<JsonOverrides, E> {
        Ok(JsonOverrides(Vec::new()))
    }

    fn visit_unit<E>(self) -> Result<JsonOverrides, E> {
        Ok(JsonOverrides(Vec::new()))
    }
}

#[cfg(test)]
mod tests;
