//! Path templates, as API Gateway writes them: literal segments, `{name}`
//! (one non-empty segment) and a final greedy `{name+}` (one or more). The
//! route table, the policy's rules and the local server all match, capture and
//! compare templates here, so they agree on what a path means.

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
fn walk<'p>(template: &str, path: &'p str, mut on_param: impl FnMut(&str, &'p str)) -> bool {
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
            None if segment == this => {}
            _ => return false,
        }
        if tail.is_empty() && !last {
            return false;
        }
        rest = tail;
    }
    rest.is_empty()
}

/// True when `path` matches `template`.
pub fn matches(template: &str, path: &str) -> bool {
    walk(template, path, |_, _| {})
}

/// The value of parameter `name` in `path` under `template`.
pub fn capture<'p>(template: &str, path: &'p str, name: &str) -> Option<&'p str> {
    let mut found = None;
    let matched = walk(template, path, |n, value| {
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

/// True when a concrete request path is free of what a backend could read
/// differently from the authorizer: a `.` or `..` segment, a backslash, or a
/// percent-encoded `/`, `\`, `.` or `%` (the authorizer matches the path as
/// sent; the backend may decode and normalise it). Such a path matches no
/// rule, so it is refused.
pub fn is_plain(path: &str) -> bool {
    const AMBIGUOUS: [&str; 4] = ["%2f", "%5c", "%2e", "%25"];
    let lower = path.to_ascii_lowercase();
    !path.contains('\\')
        && !AMBIGUOUS.iter().any(|e| lower.contains(e))
        && !segments(path).any(|s| s == "." || s == "..")
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
    fn paths_a_backend_could_read_otherwise_are_not_plain() {
        assert!(is_plain("/orders/ada/7"));
        assert!(is_plain("/files/my%20file.txt"));
        for path in [
            "/orders/ada/..%2Fbob",
            "/orders/ada/%2e%2e/bob",
            "/a/../b",
            "/a/./b",
            "/a\\b",
            "/a%5Cb",
            "/a/%252F",
        ] {
            assert!(!is_plain(path), "{path}");
        }
    }
}
