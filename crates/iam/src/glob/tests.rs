use super::*;
use crate::effort::JUDGEMENT_STEPS;
use proptest::prelude::*;

fn effort() -> Effort {
    Effort::for_judgement()
}

fn m(pattern: &str, text: &str, ci: bool) -> bool {
    matches(pattern, text, ci, &effort()).expect("within the bound")
}

fn i(a: &str, b: &str, ci: bool) -> bool {
    intersects(a, b, ci, &effort()).expect("within the bound")
}

fn c(outer: &str, inner: &str, ci: bool) -> bool {
    covers(outer, inner, ci, &effort()).expect("within the bound")
}

/// IAM's matching written plainly, as the oracle: `*` any run, `?` one character.
/// `fits[k]`: the pattern so far matches the text's first `k` characters.
fn plain(pattern: &[char], text: &[char]) -> bool {
    let mut fits = vec![false; text.len() + 1];
    fits[0] = true;
    for p in pattern {
        let mut next = vec![false; text.len() + 1];
        for k in 0..=text.len() {
            next[k] = match p {
                '*' => fits[k] || (k > 0 && next[k - 1]),
                '?' => k > 0 && fits[k - 1],
                c => k > 0 && fits[k - 1] && text[k - 1] == *c,
            };
        }
        fits = next;
    }
    fits[text.len()]
}

/// IAM's matching of an ARN pattern: as [`plain`], but a wildcard within the partition,
/// service, region or account field (before the fifth `:`) matches no `:`, unless it is
/// the `*` that ends the pattern.
fn iam_arn_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let arn = pattern.starts_with("arn:");
    let mut fits = vec![false; t.len() + 1];
    fits[0] = true;
    let mut colons = 0;
    for (i, c) in p.iter().enumerate() {
        let confined = arn && colons < 5 && !(*c == '*' && i + 1 == p.len());
        let mut next = vec![false; t.len() + 1];
        for k in 0..=t.len() {
            let fits_char = |k: usize| k > 0 && !(confined && t[k - 1] == ':');
            next[k] = match c {
                '*' => fits[k] || (fits_char(k) && next[k - 1]),
                '?' => fits_char(k) && fits[k - 1],
                c => k > 0 && fits[k - 1] && t[k - 1] == *c,
            };
        }
        if *c == ':' {
            colons += 1;
        }
        fits = next;
    }
    fits[t.len()]
}

fn plain_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    plain(&p, &t)
}

#[test]
fn matching_follows_iam_wildcards() {
    assert!(m(
        "arn:aws:iam::aws:policy/*",
        "arn:aws:iam::aws:policy/AmazonS3ReadOnlyAccess",
        false
    ));
    assert!(!m(
        "arn:aws:iam::aws:policy/*",
        "arn:aws:iam::111122223333:policy/x",
        false
    ));
    assert!(m("s3:Get?bject", "s3:GetObject", false));
    assert!(!m("s3:Get?bject", "s3:Getbject", false));
    assert!(m("S3:GETOBJECT", "s3:GetObject", true));
    assert!(!m("S3:GETOBJECT", "s3:GetObject", false));
    assert!(m("*", "", false));
    assert!(!m("", "a", false));
    assert!(m("a*b*c", "aXbYbc", false));
    assert!(!m("a*b?c", "abc", false));
}

#[test]
fn a_run_of_wildcards_is_its_ones_then_one_run() {
    assert_eq!(
        tokens("a*?*?b"),
        vec![
            Token::Char('a'),
            Token::One(Class::Any),
            Token::One(Class::Any),
            Token::Run(Class::Any),
            Token::Char('b'),
        ]
    );
    assert_eq!(tokens("**"), vec![Token::Run(Class::Any)]);
    assert_eq!(tokens("??"), vec![Token::One(Class::Any); 2]);
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
        assert!(i(allowed, "iam:*", true), "{allowed} should reach iam:*");
    }
    for allowed in ["s3:*", "sts:AssumeRole*", "ia", "iam", "ec2:*", "s*:Get*"] {
        assert!(
            !i(allowed, "iam:*", true),
            "{allowed} should not reach iam:*"
        );
    }
}

#[test]
fn covering_the_shapes_policies_use() {
    assert!(c("iam:*", "iam:PassRole", true));
    assert!(c("IAM:*", "iam:Pass*", true));
    assert!(c("*", "sts:AssumeRole", true));
    assert!(c("iam:*", "iam:*", true));
    assert!(!c("iam:Pass*", "iam:*", true));
    assert!(!c("iam:*", "i*", true));
    assert!(!c("sts:AssumeRole", "sts:AssumeRole*", true));
    assert!(c(
        "arn:aws:sqs:*:111122223333:shop-*",
        "arn:aws:sqs:eu-west-1:111122223333:shop-orders",
        false
    ));
    assert!(!c(
        "arn:aws:sqs:*:111122223333:shop-*",
        "arn:aws:sqs:*:*:shop-orders",
        false
    ));
    assert!(!c("arn:aws:s3:::shop-*", "arn:aws:s3:::shop*", false));
    assert!(!c("arn:aws:s3:::shop-*", "*", false));
    assert!(c("*", "*", false));
    assert!(c("a?*", "a*?", false));
    assert!(!c("a??*", "a?*", false));
    // IAM reads an ARN's first fields one by one: a `*` there does not reach into the
    // resource part (the sixth finding of the adversarial pass).
    assert!(!c(
        "arn:*:s3:::shop.*",
        "arn:aws:s3:::payments.orders/*:s3:::shop.*",
        false
    ));
    assert!(c("arn:*:s3:::shop.*", "arn:aws:s3:::shop.orders/*", false));
    assert!(c("arn:*", "arn:aws:s3:::anything", false));
    assert!(c(
        "arn:aws:sqs:*:111122223333:shop_*",
        "arn:aws:sqs:eu-west-1:111122223333:shop_events",
        false
    ));
    assert!(!c(
        "arn:aws:sqs:*:111122223333:shop_*",
        "arn:aws:sqs:eu-west-1:111122223333:payments_q:x:111122223333:shop_y",
        false
    ));
}

#[test]
fn shapes_ask_what_plain_wildcards_cannot() {
    // Some secret of any name, in any partition, region and account.
    let any_secret = Shape::new()
        .literal("arn:")
        .field()
        .literal(":")
        .field_like("secretsmanager")
        .literal(":")
        .field()
        .literal(":")
        .field()
        .literal(":")
        .word()
        .literal(":")
        .unnamed();
    let e = effort();
    for every in [
        "*",
        "arn:*",
        "arn:*:*",
        "arn:?*",
        "arn:aws:secretsmanager:*",
        "arn:aws:secretsmanager:eu-west-1:111122223333:secret:*",
        "arn:aws:secretsmanager:eu-west-1:111122223333:secret:??*",
        "arn:aws:secretsmanager:eu-west-1:111122223333:sec*",
        "arn:aws:*:eu-west-1:111122223333:secret:*",
    ] {
        assert_eq!(
            meets_shape(every, &any_secret, true, &e),
            Ok(true),
            "{every}"
        );
    }
    for named in [
        "arn:aws:secretsmanager:eu-west-1:111122223333:secret:shop/*",
        "arn:aws:secretsmanager:*:*:secret:shop-*",
        "arn:aws:s3:::*",
        "arn:aws:secretsmanager:eu-west-1:111122223333:secret:s*",
    ] {
        assert_eq!(
            meets_shape(named, &any_secret, true, &e),
            Ok(false),
            "{named}"
        );
    }
}

#[test]
fn the_bound_is_kept_and_reported() {
    let small = Effort::new(100, 1_000_000);
    let long = format!("arn:aws:s3:::{}", "a*".repeat(500));
    assert_eq!(
        covers("arn:aws:s3:::*", &long, false, &small),
        Err(TooComplex)
    );
    assert!(small.exhausted());
    // Memory too: a set of states that would not fit is refused, not grown.
    let tight = Effort::new(u64::MAX / 2, 10);
    assert_eq!(covers("a*", "a*", false, &tight), Err(TooComplex));
}

/// The attacks that kept the old engine busy for seconds to minutes, each answered
/// exactly and within a small part of the bound.
#[test]
fn the_known_worst_cases_are_cheap() {
    let allowed = "arn:aws:s3:::team.*";
    let star_one = format!("arn:aws:s3:::team.{}", "*?".repeat(400));
    let distinct: String = (0..1000u32)
        .filter_map(|n| char::from_u32(0x4e00 + n))
        .flat_map(|ch| ['*', ch])
        .collect();
    let alternating = format!("arn:aws:s3:::team.{distinct}");
    for inner in [&star_one, &alternating] {
        let e = effort();
        assert_eq!(covers(allowed, inner, false, &e), Ok(true));
        assert!(
            e.steps_taken() < JUDGEMENT_STEPS / 100,
            "{} steps",
            e.steps_taken()
        );
        let e = effort();
        assert_eq!(covers("arn:aws:s3:::team.x*", inner, false, &e), Ok(false));
    }
}

fn pattern() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[ab*?]{0,6}").expect("valid regex")
}

/// Patterns an attacker would write: long, many wildcards, many distinct characters.
fn adversarial() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("*".to_string()),
            Just("?".to_string()),
            Just("*?".to_string()),
            "[a-c]",
            "[a-z0-9:/.-]",
            (0x4e00u32..0x9fff)
                .prop_map(|n| char::from_u32(n).map(String::from).unwrap_or_default()),
        ],
        0..1024,
    )
    .prop_map(|pieces| pieces.concat())
}

fn strings_up_to(len: usize, alphabet: &[char]) -> Vec<String> {
    let mut all = vec![String::new()];
    let mut frontier = vec![String::new()];
    for _ in 0..len {
        frontier = frontier
            .iter()
            .flat_map(|s| alphabet.iter().map(move |ch| format!("{s}{ch}")))
            .collect();
        all.extend(frontier.iter().cloned());
    }
    all
}

proptest! {
    /// Matching agrees with the plain oracle.
    #[test]
    fn matching_agrees_with_the_oracle(p in pattern(), text in "[ab]{0,8}") {
        prop_assert_eq!(m(&p, &text, false), plain_match(&p, &text));
    }

    /// Any text two patterns both match proves they intersect, and every text a pattern
    /// matches intersects it.
    #[test]
    fn intersection_agrees_with_matching(a in pattern(), b in pattern(), text in "[ab]{0,6}") {
        if m(&a, &text, false) && m(&b, &text, false) {
            prop_assert!(i(&a, &b, false));
        }
        prop_assert_eq!(m(&a, &text, false), i(&a, &text, false));
    }

    /// For ARN patterns, `covers` agrees with IAM's reading (wildcards stay in the first
    /// fields), found by brute force over short ARNs.
    #[test]
    fn covering_of_arns_agrees_with_iams_fields(
        outer in proptest::string::string_regex("[a:*?]{0,6}").expect("valid regex"),
        inner in proptest::string::string_regex("[a:*?]{0,6}").expect("valid regex"),
    ) {
        let (outer, inner) = (format!("arn:{outer}"), format!("arn:{inner}"));
        let escaped = strings_up_to(7, &['a', ':', 'c'])
            .into_iter()
            .map(|tail| format!("arn:{tail}"))
            .find(|text| plain_match(&inner, text) && !iam_arn_match(&outer, text));
        prop_assert_eq!(c(&outer, &inner, false), escaped.is_none(), "{:?}", escaped);
    }

    #[test]
    fn intersection_is_symmetric(a in pattern(), b in pattern()) {
        prop_assert_eq!(i(&a, &b, false), i(&b, &a, false));
    }

    /// Intersection equals the existence of a common text, found by brute force with the
    /// oracle: a shortest witness needs at most one character per non-`*` token of each
    /// pattern, so texts up to 12 characters over the alphabet are enough.
    #[test]
    fn intersection_has_a_witness(a in pattern(), b in pattern()) {
        let brute = strings_up_to(12, &['a', 'b'])
            .iter()
            .any(|w| plain_match(&a, w) && plain_match(&b, w));
        prop_assert_eq!(i(&a, &b, false), brute);
    }

    /// `covers` agrees with brute force: whatever the inner pattern matches among the
    /// texts up to 9 characters over {a, b, c} (`c` standing for every character neither
    /// pattern names), the outer matches too, exactly when `covers` says so.
    #[test]
    fn covering_agrees_with_brute_force(outer in pattern(), inner in pattern()) {
        let escaped = strings_up_to(9, &['a', 'b', 'c'])
            .into_iter()
            .find(|text| plain_match(&inner, text) && !plain_match(&outer, text));
        prop_assert_eq!(c(&outer, &inner, false), escaped.is_none(), "{:?}", escaped);
    }

    /// The bound holds whatever an attacker writes, up to the CRD's 2,048 characters: the
    /// answer is exact or "too complex", never more work or memory than allowed.
    #[test]
    fn adversarial_patterns_stay_within_the_bound(
        outer in prop_oneof![
            Just("arn:aws:s3:::team.*".to_string()),
            Just("arn:aws:sqs:eu-west-1:111122223333:team_*".to_string()),
            adversarial(),
        ],
        inner in adversarial(),
    ) {
        let e = Effort::new(2_000_000, 200_000);
        let covered = covers(&outer, &inner, false, &e);
        prop_assert!(e.steps_taken() <= 2_000_000);
        let crossed = intersects(&outer, &inner, false, &e);
        prop_assert!(e.steps_taken() <= 2_000_000);
        // Whatever was answered is right on a text the inner pattern matches: itself,
        // with each `*` empty and each `?` one character.
        let spelled: String = inner
            .chars()
            .filter(|c| *c != '*')
            .map(|c| if c == '?' { 'x' } else { c })
            .collect();
        prop_assert!(plain_match(&inner, &spelled));
        if covered == Ok(true) {
            prop_assert!(plain_match(&outer, &spelled));
        }
        if crossed == Ok(false) {
            prop_assert!(!plain_match(&outer, &spelled));
        }
    }
}
