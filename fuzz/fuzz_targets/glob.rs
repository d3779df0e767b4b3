//! The wildcard engine against the plain oracle: matching agrees with it, intersection is
//! symmetric and found wherever a common text is, covering never claims what a text
//! disproves, and every question ends within its bound.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use podidentity_fuzz::{instances, plain_match};
use podidentity_iam::effort::Effort;
use podidentity_iam::glob::{covers, intersects, matches};

#[derive(Arbitrary, Debug)]
struct Question {
    outer: String,
    inner: String,
    text: String,
    case_insensitive: bool,
}

fuzz_target!(|q: Question| {
    let ci = q.case_insensitive;
    let effort = Effort::new(200_000, 200_000);
    if let Ok(answer) = matches(&q.outer, &q.text, ci, &effort) {
        assert_eq!(answer, plain_match(&q.outer, &q.text, ci), "matches {q:?}");
    }
    let effort = Effort::new(200_000, 200_000);
    let crossed = intersects(&q.outer, &q.inner, ci, &effort);
    let effort = Effort::new(200_000, 200_000);
    if let (Ok(a), Ok(b)) = (crossed, intersects(&q.inner, &q.outer, ci, &effort)) {
        assert_eq!(a, b, "intersection is not symmetric: {q:?}");
    }
    let mut texts = instances(&q.inner);
    texts.push(q.text.clone());
    texts.extend(instances(&q.outer));
    for text in &texts {
        if plain_match(&q.outer, text, ci) && plain_match(&q.inner, text, ci) {
            assert_ne!(crossed, Ok(false), "{text:?} matches both: {q:?}");
        }
    }
    let effort = Effort::new(200_000, 200_000);
    if covers(&q.outer, &q.inner, ci, &effort) == Ok(true) {
        for text in &texts {
            if plain_match(&q.inner, text, ci) {
                assert!(plain_match(&q.outer, text, ci), "{text:?} escapes: {q:?}");
            }
        }
    }
    assert!(effort.steps_taken() <= 200_000);
});
