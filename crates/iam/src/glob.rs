//! Wildcard patterns as IAM uses them: `*` matches any run of characters (also none), `?`
//! exactly one. Matching asks whether a pattern covers a text; intersection asks whether
//! two patterns could both match some text, which is what a guardrail on action patterns
//! needs (`i*` and `iam:*` meet at `iam:CreateUser`). Glob crates answer only the first
//! question, so both live here in one small automaton.

/// Whether `pattern` matches `text`. IAM action names compare case-insensitively; ARNs do
/// not, so the caller says which.
pub fn matches(pattern: &str, text: &str, case_insensitive: bool) -> bool {
    // A literal text is a pattern without wildcards: matching is intersection with it.
    let literal: Vec<Token> = text.chars().map(Token::Char).collect();
    intersect_tokens(&tokens(pattern), &literal, case_insensitive)
}

/// Whether some string matches both patterns.
pub fn intersects(a: &str, b: &str, case_insensitive: bool) -> bool {
    intersect_tokens(&tokens(a), &tokens(b), case_insensitive)
}

/// Whether every string `inner` matches, `outer` matches too, answered soundly for the
/// shapes policies use: `outer` a text or a text followed by one `*`. Anything else is
/// answered "no" (the caller then assumes `inner` is not covered, the safe side).
pub fn covers(outer: &str, inner: &str, case_insensitive: bool) -> bool {
    let fold = |s: &str| {
        if case_insensitive {
            s.to_ascii_lowercase()
        } else {
            s.to_string()
        }
    };
    let (outer, inner) = (fold(outer), fold(inner));
    if outer == inner {
        return true;
    }
    match outer.strip_suffix('*') {
        Some(head) if !head.contains(['*', '?']) => {
            // Every string of `inner` begins with its text up to the first wildcard.
            let inner_head = inner.split(['*', '?']).next().unwrap_or_default();
            inner_head.starts_with(head)
        }
        _ => false,
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Token {
    Char(char),
    AnyOne,
    AnyRun,
}

fn tokens(pattern: &str) -> Vec<Token> {
    pattern
        .chars()
        .map(|c| match c {
            '*' => Token::AnyRun,
            '?' => Token::AnyOne,
            c => Token::Char(c),
        })
        .collect()
}

/// Reachability over pairs of positions (i in a, j in b): the product automaton of the
/// two patterns. Both ends reached together means a common string exists.
fn intersect_tokens(a: &[Token], b: &[Token], case_insensitive: bool) -> bool {
    let same_char = |x: char, y: char| {
        if case_insensitive {
            x.to_lowercase().eq(y.to_lowercase())
        } else {
            x == y
        }
    };
    let width = b.len() + 1;
    let mut seen = vec![false; (a.len() + 1) * width];
    let mut stack = vec![(0usize, 0usize)];
    while let Some((i, j)) = stack.pop() {
        let cell = i * width + j;
        if seen[cell] {
            continue;
        }
        seen[cell] = true;
        if i == a.len() && j == b.len() {
            return true;
        }
        let ta = a.get(i).copied();
        let tb = b.get(j).copied();
        // A run may match nothing: skip it.
        if ta == Some(Token::AnyRun) {
            stack.push((i + 1, j));
        }
        if tb == Some(Token::AnyRun) {
            stack.push((i, j + 1));
        }
        match (ta, tb) {
            (Some(Token::AnyRun), Some(Token::AnyRun)) => {}
            // A run on one side swallows one character that the other side produces.
            (Some(Token::AnyRun), Some(_)) => stack.push((i, j + 1)),
            (Some(_), Some(Token::AnyRun)) => stack.push((i + 1, j)),
            (Some(Token::Char(x)), Some(Token::Char(y))) if !same_char(x, y) => {}
            // Equal characters, or `?` against anything but a run: both advance.
            (Some(_), Some(_)) => stack.push((i + 1, j + 1)),
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn matching_follows_iam_wildcards() {
        assert!(matches(
            "arn:aws:iam::aws:policy/*",
            "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
            false
        ));
        assert!(!matches(
            "arn:aws:iam::aws:policy/*",
            "arn:aws:iam::111122223333:policy/x",
            false
        ));
        assert!(matches("s3:Get?bject", "s3:GetObject", false));
        assert!(!matches("s3:Get?bject", "s3:Getbject", false));
        assert!(matches("S3:GETOBJECT", "s3:GetObject", true));
        assert!(!matches("S3:GETOBJECT", "s3:GetObject", false));
        assert!(matches("*", "", false));
        assert!(!matches("", "a", false));
    }

    #[test]
    fn intersection_catches_every_route_to_a_denied_action() {
        for allowed in [
            "*",
            "i*",
            "iam:Pass*",
            "iam:*",
            "*:PassRole",
            "?am:*",
            "I*:p*",
        ] {
            assert!(
                intersects(allowed, "iam:*", true),
                "{allowed} should reach iam:*"
            );
        }
        for allowed in ["s3:*", "sts:AssumeRole*", "ia", "iam", "ec2:*", "s*:Get*"] {
            assert!(
                !intersects(allowed, "iam:*", true),
                "{allowed} should not reach iam:*"
            );
        }
    }

    fn pattern() -> impl Strategy<Value = String> {
        proptest::string::string_regex("[ab*?]{0,6}").expect("valid regex")
    }

    proptest! {
        /// Any text two patterns both match proves they intersect, and every text a
        /// pattern matches intersects it.
        #[test]
        fn intersection_agrees_with_matching(a in pattern(), b in pattern(), text in "[ab]{0,6}") {
            if matches(&a, &text, false) && matches(&b, &text, false) {
                prop_assert!(intersects(&a, &b, false));
            }
            prop_assert_eq!(matches(&a, &text, false), intersects(&a, &text, false));
        }

        #[test]
        fn intersection_is_symmetric(a in pattern(), b in pattern()) {
            prop_assert_eq!(intersects(&a, &b, false), intersects(&b, &a, false));
        }

        /// Intersection equals the existence of a common string, found by brute force: a
        /// shortest witness needs at most one character per non-`*` token of each pattern,
        /// so strings up to 12 characters over the alphabet are enough.
        #[test]
        fn intersection_has_a_witness(a in pattern(), b in pattern()) {
            let mut witnesses = vec![String::new()];
            let mut frontier = vec![String::new()];
            for _ in 0..12 {
                frontier = frontier.iter().flat_map(|s| [format!("{s}a"), format!("{s}b")]).collect();
                witnesses.extend(frontier.iter().cloned());
            }
            let brute = witnesses.iter().any(|w| matches(&a, w, false) && matches(&b, w, false));
            prop_assert_eq!(intersects(&a, &b, false), brute);
        }

        /// `covers` is sound: whatever the inner pattern matches (every string up to 8
        /// characters), the outer matches too.
        #[test]
        fn covering_is_sound(outer in "[ab]{0,3}\\*?", inner in pattern()) {
            if covers(&outer, &inner, false) {
                let mut frontier = vec![String::new()];
                for _ in 0..8 {
                    for text in &frontier {
                        if matches(&inner, text, false) {
                            prop_assert!(matches(&outer, text, false), "{} {} {}", outer, inner, text);
                        }
                    }
                    frontier = frontier.iter().flat_map(|s| [format!("{s}a"), format!("{s}b")]).collect();
                }
            }
        }
    }

    #[test]
    fn covering_the_shapes_policies_use() {
        assert!(covers("iam:*", "iam:PassRole", true));
        assert!(covers("IAM:*", "iam:Pass*", true));
        assert!(covers("*", "sts:AssumeRole", true));
        assert!(covers("iam:*", "iam:*", true));
        assert!(!covers("iam:Pass*", "iam:*", true));
        assert!(!covers("iam:*", "i*", true));
        assert!(!covers("sts:AssumeRole", "sts:AssumeRole*", true));
    }
}
