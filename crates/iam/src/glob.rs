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

/// Whether every string `inner` matches, `outer` matches too (`iam:*` covers
/// `iam:Pass*`; `arn:aws:s3:::shop-*` covers `arn:aws:s3:::shop-orders/*` but not
/// `arn:aws:s3:::shop*`). Exact: the inner pattern is walked against the set of places the
/// outer one could be at, over the characters either pattern names and one stand-in for
/// every other. Past a generous bound of explored states the answer is "no", the safe
/// side for a guardrail.
pub fn covers(outer: &str, inner: &str, case_insensitive: bool) -> bool {
    let fold = |s: &str| {
        if case_insensitive {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    };
    let (outer, inner) = (tokens(&fold(outer)), tokens(&fold(inner)));
    // The characters that matter, and one that neither pattern names.
    let mut alphabet: Vec<Option<char>> = outer
        .iter()
        .chain(inner.iter())
        .filter_map(|t| match t {
            Token::Char(c) => Some(Some(*c)),
            _ => None,
        })
        .collect();
    alphabet.sort_unstable();
    alphabet.dedup();
    alphabet.push(None);

    // Positions a pattern can be at before reading more: runs may match nothing.
    let close = |pattern: &[Token], mut positions: Vec<usize>| {
        let mut i = 0;
        while i < positions.len() {
            let p = positions[i];
            if pattern.get(p) == Some(&Token::AnyRun) && !positions.contains(&(p + 1)) {
                positions.push(p + 1);
            }
            i += 1;
        }
        positions.sort_unstable();
        positions.dedup();
        positions
    };
    let step = |pattern: &[Token], positions: &[usize], symbol: Option<char>| {
        let mut next = Vec::new();
        for &p in positions {
            match (pattern.get(p), symbol) {
                (Some(Token::AnyRun), _) => next.push(p),
                (Some(Token::AnyOne), _) => next.push(p + 1),
                (Some(Token::Char(c)), Some(s)) if *c == s => next.push(p + 1),
                _ => {}
            }
        }
        close(pattern, next)
    };

    let start = (close(&inner, vec![0]), close(&outer, vec![0]));
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = vec![start];
    while let Some((inner_at, outer_at)) = stack.pop() {
        if !seen.insert((inner_at.clone(), outer_at.clone())) {
            continue;
        }
        if seen.len() > 20_000 {
            return false;
        }
        // A string inner accepts here that outer does not.
        if inner_at.contains(&inner.len()) && !outer_at.contains(&outer.len()) {
            return false;
        }
        for symbol in &alphabet {
            let inner_next = step(&inner, &inner_at, *symbol);
            if inner_next.is_empty() {
                continue;
            }
            stack.push((inner_next, step(&outer, &outer_at, *symbol)));
        }
    }
    true
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

        /// `covers` agrees with brute force: whatever the inner pattern matches among the
        /// strings up to 9 characters over {a, b, c} (`c` standing for every character
        /// neither pattern names), the outer matches too, exactly when `covers` says so.
        #[test]
        fn covering_agrees_with_brute_force(outer in pattern(), inner in pattern()) {
            let mut escaped = None;
            let mut frontier = vec![String::new()];
            for _ in 0..=9 {
                for text in &frontier {
                    if escaped.is_none() && matches(&inner, text, false) && !matches(&outer, text, false) {
                        escaped = Some(text.clone());
                    }
                }
                frontier = frontier.iter().flat_map(|s| [format!("{s}a"), format!("{s}b"), format!("{s}c")]).collect();
            }
            prop_assert_eq!(covers(&outer, &inner, false), escaped.is_none(), "{:?}", escaped);
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
        assert!(covers(
            "arn:aws:sqs:*:111122223333:shop-*",
            "arn:aws:sqs:eu-west-1:111122223333:shop-orders",
            false
        ));
        assert!(!covers(
            "arn:aws:sqs:*:111122223333:shop-*",
            "arn:aws:sqs:*:*:shop-orders",
            false
        ));
        assert!(!covers("arn:aws:s3:::shop-*", "arn:aws:s3:::shop*", false));
        assert!(!covers("arn:aws:s3:::shop-*", "*", false));
        assert!(covers("*", "*", false));
    }
}
