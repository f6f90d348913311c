//! Path templates, as API Gateway writes them: literal segments, `{name}`
//! (one non-empty segment) and a final greedy `{name+}` (one or more). The
//! route table, the policy's rules and the local server all match, capture and
//! compare templates here, so they agree on what a path means.

use std::borrow::Cow;
use std::cmp::Ordering;

/// `{name}` or `{name+}`: the parameter's name and whether it is greedy.
pub fn parameter(segment: &str) -> Option<(&str, bool)> {
    let inner = segment.strip_prefix('{')?.strip_suffix('}')?;
    match inner.strip_suffix('+') {
        Some(name) => Some((name, true)),
        None => Some((inner, false)),
    }
}

fn segments(template: &str) -> impl Iterator<Item = &str> {
    template.trim_matches('/').split('/')
}

/// Walks `path` along `template`, handing each parameter to `on_param`;
/// false when it does not match. Allocates nothing.
fn walk<'p>(template: &str, path: &'p str, fold: bool, mut on_param: impl FnMut(&str, &'p str)) -> bool {
    let mut rest = path.trim_matches('/');
    let mut segments = segments(template).peekable();
    while let Some(segment) = segments.next() {
        let last = segments.peek().is_none();
        let (this, tail) = rest.split_once('/').unwrap_or((rest, ""));
        match parameter(segment) {
            Some((name, true)) if last && !rest.is_empty() => {
                on_param(name, rest);
                return true;
            }
            Some((_, true)) => return false,
            Some((name, false)) if !this.is_empty() => on_param(name, this),
            None if segment == this || (fold && loosely(segment, this)) => {}
            _ => return false,
        }
        if tail.is_empty() && !last {
            return false;
        }
        rest = tail;
    }
    rest.is_empty()
}

/// The first segment of `template` when it is a literal.
pub fn first_literal(template: &str) -> Option<&str> {
    segments(template).next().filter(|s| parameter(s).is_none())
}

/// True when `path` matches `template`.
pub fn matches(template: &str, path: &str) -> bool {
    walk(template, path, false, |_, _| {})
}

/// True when `path` matches `template` as a lenient backend could route it:
/// literal segments compared ignoring ASCII case (Express's default), and
/// also with surrounding whitespace trimmed (older Spring) or a `.format`
/// suffix removed (Rails' `(.:format)`, Spring's suffix patterns).
pub fn matches_loosely(template: &str, path: &str) -> bool {
    walk(template, path, true, |_, _| {})
}

/// A path segment a lenient backend could take for `literal`.
fn loosely(literal: &str, segment: &str) -> bool {
    let trimmed = segment.trim();
    let stem = trimmed.rsplit_once('.').map_or(trimmed, |(stem, _)| stem);
    literal.eq_ignore_ascii_case(trimmed) || literal.eq_ignore_ascii_case(stem)
}

/// The value of parameter `name` in `path` under `template`.
pub fn capture<'p>(template: &str, path: &'p str, name: &str) -> Option<&'p str> {
    let mut found = None;
    let matched = walk(template, path, false, |n, value| {
        if n == name {
            found = Some(value);
        }
    });
    found.filter(|_| matched)
}

/// What a segment is, from least to most specific.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind<'a> {
    Greedy,
    Param,
    Literal(&'a str),
}

fn kind(segment: &str) -> Kind<'_> {
    match parameter(segment) {
        Some((_, true)) => Kind::Greedy,
        Some(_) => Kind::Param,
        None => Kind::Literal(segment),
    }
}

/// True when some path matches both templates. A greedy parameter covers
/// what is left of the other template, if anything is.
pub fn overlap(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (segments(a).map(kind), segments(b).map(kind));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(Kind::Greedy), Some(_)) | (Some(_), Some(Kind::Greedy)) => return true,
            (Some(Kind::Literal(x)), Some(Kind::Literal(y))) if x != y => return false,
            (Some(_), Some(_)) => {}
            _ => return false,
        }
    }
}

/// Orders templates by how specifically they name a path, as API Gateway
/// picks among the routes a request matches: segment by segment from the
/// left, a literal before `{name}` before `{name+}`. `Greater` is the more
/// specific. Two templates that overlap and compare `Equal` have the same
/// shape (they differ at most in parameter names).
pub fn specificity(a: &str, b: &str) -> Ordering {
    let rank = |k: Kind<'_>| match k {
        Kind::Greedy => 0,
        Kind::Param => 1,
        Kind::Literal(_) => 2,
    };
    segments(a).map(|s| rank(kind(s))).cmp(segments(b).map(|s| rank(kind(s))))
}

/// A segment's value no backend can read as more than one segment, or as a
/// step up or sideways: no separator (`/`, `\\`), no `;` (matrix parameters,
/// which servlet containers strip), no `%` left after decoding, no control
/// character, not `.` or `..`.
pub fn plain_segment(value: &str) -> bool {
    value != "."
        && value != ".."
        && !value.chars().any(|c| matches!(c, '/' | '\\' | ';' | '%') || c.is_control())
}

/// A request path as a backend would read it, decoded once: each segment
/// percent-decoded (valid UTF-8) and [`plain_segment`]; no empty segment but
/// a single trailing `/`. `None` for anything else, which no rule then
/// decides: the authorizer must judge the path the backend serves, and a
/// path one backend decodes, normalises or truncates otherwise than another
/// has no one meaning.
pub fn canonical(path: &str) -> Option<Cow<'_, str>> {
    let inner = path.strip_prefix('/')?;
    let inner = inner.strip_suffix('/').unwrap_or(inner);
    if inner.is_empty() {
        return (path.len() == 1).then_some(Cow::Borrowed(path));
    }
    fn decoded(segment: &str) -> Option<Cow<'_, str>> {
        percent_encoding::percent_decode_str(segment).decode_utf8().ok()
    }
    let plain = |segment: &str| !segment.is_empty() && decoded(segment).is_some_and(|d| plain_segment(&d));
    if !inner.split('/').all(plain) {
        return None;
    }
    if !path.contains('%') {
        return Some(Cow::Borrowed(path));
    }
    let segments: Vec<Cow<'_, str>> = inner.split('/').filter_map(decoded).collect();
    Some(Cow::Owned(format!("/{}", segments.join("/"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments() {
        assert!(matches("/admin/users/{user_id}/roles", "/admin/users/abc/roles"));
        assert!(!matches("/admin/users/{user_id}/roles", "/admin/users//roles"));
        assert!(!matches("/admin/users/{user_id}/roles", "/admin/users/abc/roles/x"));
        assert!(!matches("/me", "/mee"));
        assert!(matches("/", "/"));
        assert!(!matches("/", "/x"));
        assert!(!matches("/a/{x}", "/a/"));
        assert_eq!(capture("/orders/{id}", "/orders/7", "id"), Some("7"));
        assert_eq!(capture("/orders/{id}", "/orders/7/x", "id"), None);
        assert_eq!(capture("/f/{proxy+}", "/f/a/b", "proxy"), Some("a/b"));
        assert_eq!(capture("/f/{proxy+}", "/f", "proxy"), None);
    }

    #[test]
    fn overlap_knows_greedy_parameters() {
        assert!(overlap("/admin/users/{user_id}/roles", "/admin/users/x/roles"));
        assert!(!overlap("/admin/users/{user_id}/roles", "/admin/users/x/roles/y"));
        assert!(!overlap("/me", "/mee"));
        assert!(overlap("/orders/{proxy+}", "/orders/{id}"));
        assert!(overlap("/orders/{id}", "/orders/{proxy+}"));
        assert!(overlap("/{proxy+}", "/admin/users/{user_id}/roles"));
        assert!(overlap("/orders/{a+}", "/orders/x/{b+}"));
        assert!(!overlap("/orders/{proxy+}", "/orders"), "a greedy parameter takes at least one segment");
        assert!(!overlap("/orders/{proxy+}", "/files/{id}"));
    }

    #[test]
    fn literals_are_more_specific_than_parameters_than_greedy_ones() {
        use Ordering::*;
        assert_eq!(specificity("/orders/{id}", "/orders/{proxy+}"), Greater);
        assert_eq!(specificity("/orders/export", "/orders/{id}"), Greater);
        assert_eq!(specificity("/{proxy+}", "/orders/{proxy+}"), Less);
        assert_eq!(specificity("/a/{x}", "/{y}/b"), Greater, "the leftmost difference decides");
        assert_eq!(specificity("/orders/{a}", "/orders/{b}"), Equal);
    }

    #[test]
    fn paths_a_backend_could_read_otherwise_have_no_canonical_form() {
        assert_eq!(canonical("/orders/ada/7").as_deref(), Some("/orders/ada/7"));
        assert_eq!(canonical("/orders/ada/7/").as_deref(), Some("/orders/ada/7/"));
        assert_eq!(canonical("/").as_deref(), Some("/"));
        assert_eq!(canonical("/files/my%20file.txt").as_deref(), Some("/files/my file.txt"));
        assert_eq!(canonical("/%6Frders/bob/7").as_deref(), Some("/orders/bob/7"), "decoded once");
        assert_eq!(canonical("/caf%C3%A9/%F0%9F%A6%80").as_deref(), Some("/café/🦀"));
        for path in [
            "/orders;x/bob/7",
            "/orders//bob/7",
            "//ada/bob/x",
            "/a/b//",
            "orders/x",
            "",
            "/%c0%ae%c0%ae/x",
            "/%u002e/x",
            "/a/%00/b",
            "/a/%0a",
            "/x/..;/bob",
        ] {
            assert_eq!(canonical(path), None, "{path}");
        }
        for path in [
            "/orders/ada/..%2Fbob",
            "/orders/ada/%2e%2e/bob",
            "/a/../b",
            "/a/./b",
            "/a\\b",
            "/a%5Cb",
            "/a/%252F",
        ] {
            assert_eq!(canonical(path), None, "{path}");
        }
    }
}
