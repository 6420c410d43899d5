//! Path patterns and their precedence.
//!
//! A pattern is either an exact path or a list of segments (literals and `*`) with an
//! optional final `/**`. Precedence is a [`Specificity`] compared with `Ord`: an exact path
//! beats any pattern; then more literal segments before the first wildcard; then `*` beats
//! `**` as the first wildcard; then a rule with a `host` beats one without (an exact host
//! beats a wildcard host); then a rule with `methods` beats one without.

use super::host::HostRank;
use crate::path;

/// One segment of a wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `*`: exactly one non-empty segment.
    Star,
}

/// A compiled `path` of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathPattern {
    /// No wildcard: the normalized path must be equal.
    Exact(String),
    /// Segments, then optionally `/**` (the path before it and anything below).
    Wild {
        segments: Vec<Segment>,
        globstar: bool,
    },
}

/// Which wildcard comes first in a pattern; `*` is more specific than `**`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FirstWildcard {
    GlobStar,
    Star,
}

/// How specific a rule is. Larger wins; field order is the precedence order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Specificity {
    pub exact: bool,
    pub literal_prefix: usize,
    pub first_wildcard: FirstWildcard,
    pub host: HostRank,
    pub has_methods: bool,
}

// === impl PathPattern ===

impl PathPattern {
    /// Parses a rule's `path`. `fold_case` lower-cases literals for case-insensitive matching.
    pub fn parse(src: &str, fold_case: bool) -> Result<PathPattern, String> {
        if !src.starts_with('/') {
            return Err(format!("{src:?} must start with \"/\""));
        }
        let src_folded = if fold_case {
            src.to_ascii_lowercase()
        } else {
            src.to_owned()
        };
        let raw_segments: Vec<&str> = src_folded[1..].split('/').collect();
        let has_wildcard = raw_segments.iter().any(|s| s.contains('*'));
        if !has_wildcard {
            check_normalized(&src_folded)?;
            return Ok(PathPattern::Exact(src_folded));
        }
        let mut segments = Vec::new();
        let mut globstar = false;
        let count = raw_segments.len();
        for (i, seg) in raw_segments.iter().enumerate() {
            match *seg {
                "**" if i + 1 == count => globstar = true,
                "**" => {
                    return Err(format!(
                        "{src:?}: \"**\" is only allowed as the last segment (\"/prefix/**\")"
                    ))
                }
                "*" => segments.push(Segment::Star),
                s if s.contains('*') => {
                    return Err(format!(
                        "{src:?}: \"*\" must be a whole segment, not part of {s:?}"
                    ))
                }
                s => segments.push(Segment::Literal(s.to_owned())),
            }
        }
        // The literal parts must already be in normalized form, or no request could match them.
        let literal_form: String = segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => format!("/{l}"),
                Segment::Star => "/x".to_owned(),
            })
            .collect();
        let literal_form = if literal_form.is_empty() {
            "/".to_owned()
        } else {
            literal_form
        };
        check_normalized(&literal_form).map_err(|_| {
            format!("{src:?} is not a normalized path (no \".\", \"..\", \"//\", or escapes that requests never keep)")
        })?;
        Ok(PathPattern::Wild { segments, globstar })
    }

    /// Does this pattern match these request segments (the normalized path split after `/`)?
    pub fn matches(&self, path: &str, segs: &[&str]) -> bool {
        match self {
            PathPattern::Exact(p) => p == path,
            PathPattern::Wild { segments, globstar } => {
                if segs.len() < segments.len() || (!globstar && segs.len() != segments.len()) {
                    return false;
                }
                segments.iter().zip(segs).all(|(p, s)| match p {
                    Segment::Literal(l) => l == s,
                    Segment::Star => !s.is_empty(),
                })
            }
        }
    }

    /// The literal segments before the first wildcard (what the lookup trie is keyed by).
    pub fn literal_prefix(&self) -> Vec<&str> {
        match self {
            PathPattern::Exact(_) => Vec::new(),
            PathPattern::Wild { segments, .. } => segments
                .iter()
                .map_while(|s| match s {
                    Segment::Literal(l) => Some(l.as_str()),
                    Segment::Star => None,
                })
                .collect(),
        }
    }

    pub fn specificity(&self, has_methods: bool) -> Specificity {
        match self {
            PathPattern::Exact(p) => Specificity {
                exact: true,
                literal_prefix: p.split('/').count(),
                first_wildcard: FirstWildcard::Star,
                host: HostRank::Any,
                has_methods,
            },
            PathPattern::Wild { segments, .. } => {
                let literal_prefix = self.literal_prefix().len();
                Specificity {
                    exact: false,
                    literal_prefix,
                    first_wildcard: if literal_prefix < segments.len() {
                        FirstWildcard::Star
                    } else {
                        FirstWildcard::GlobStar
                    },
                    host: HostRank::Any,
                    has_methods,
                }
            }
        }
    }

    /// Could some path match both patterns?
    pub fn overlaps(&self, other: &PathPattern) -> bool {
        match (self, other) {
            (PathPattern::Exact(a), PathPattern::Exact(b)) => a == b,
            (PathPattern::Exact(p), w @ PathPattern::Wild { .. })
            | (w @ PathPattern::Wild { .. }, PathPattern::Exact(p)) => {
                let segs: Vec<&str> = p[1..].split('/').collect();
                w.matches(p, &segs)
            }
            (
                PathPattern::Wild {
                    segments: a,
                    globstar: ga,
                },
                PathPattern::Wild {
                    segments: b,
                    globstar: gb,
                },
            ) => {
                let lengths_fit = match (ga, gb) {
                    (false, false) => a.len() == b.len(),
                    (true, false) => b.len() >= a.len(),
                    (false, true) => a.len() >= b.len(),
                    (true, true) => true,
                };
                lengths_fit
                    && a.iter().zip(b).all(|pair| match pair {
                        (Segment::Literal(x), Segment::Literal(y)) => x == y,
                        (Segment::Literal(x), Segment::Star)
                        | (Segment::Star, Segment::Literal(x)) => !x.is_empty(),
                        (Segment::Star, Segment::Star) => true,
                    })
            }
        }
    }
}

fn check_normalized(p: &str) -> Result<(), String> {
    match path::normalize(p, false) {
        Ok(n) if n.as_str() == p => Ok(()),
        Ok(n) => Err(format!(
            "{p:?} is not a normalized path; requests are matched after normalization, so write {:?}",
            n.as_str()
        )),
        Err(e) => Err(format!("{p:?} can never match a request: {e}")),
    }
}

#[cfg(test)]
mod tests;
