//! Wildcard patterns as IAM uses them: `*` matches any run of characters (also none), `?`
//! exactly one. Three questions, each bounded by an [`Effort`]:
//! - matching: does a pattern cover a text;
//! - intersection: could two patterns both match some text (a guardrail on action
//!   patterns: `i*` and `iam:*` meet at `iam:CreateUser`);
//! - covering: does every text one pattern matches match another (`s3:*` holds `s3:Get*`).
//!
//! Glob crates answer only the first, so all three live here. Patterns are normalised
//! first (a run of wildcards is its `?`s then one `*`: `*?*?` is `??*`), which keeps the
//! automata small whatever the spelling. Intersection also takes [`Shape`]s: patterns
//! with character classes, for questions such as "some ARN of this service whose name is
//! anything at all".

use crate::effort::{Effort, Held, TooComplex};

/// What one wildcard of a [`Shape`] stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Class {
    /// Any character.
    Any,
    /// Any character but these (`:` ends an ARN's field).
    Except(&'static [char]),
    /// A character that neither side of the question names: a name nobody wrote.
    Fresh,
}

impl Class {
    fn admits(self, c: char) -> bool {
        match self {
            Class::Any => true,
            Class::Except(excluded) => !excluded.contains(&c),
            Class::Fresh => false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Token {
    Char(char),
    /// Exactly one character of the class (`?` is `One(Any)`).
    One(Class),
    /// Any run of characters of the class, also none (`*` is `Run(Any)`).
    Run(Class),
}

/// Whether the two tokens can consume one same character.
fn compatible(a: Token, b: Token) -> bool {
    match (a, b) {
        (Token::Char(x), Token::Char(y)) => x == y,
        (Token::Char(x), Token::One(class) | Token::Run(class))
        | (Token::One(class) | Token::Run(class), Token::Char(x)) => class.admits(x),
        // Every class holds infinitely many characters, and any two meet.
        _ => true,
    }
}

fn fold(text: &str, case_insensitive: bool) -> String {
    if case_insensitive {
        text.to_ascii_lowercase()
    } else {
        text.to_string()
    }
}

/// A pattern's tokens, each run of wildcards normalised to its `?`s then one `*`.
fn tokens(pattern: &str) -> Vec<Token> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut ones = 0usize;
    let mut run = false;
    let flush = |out: &mut Vec<Token>, ones: &mut usize, run: &mut bool| {
        out.extend(std::iter::repeat_n(Token::One(Class::Any), *ones));
        if *run {
            out.push(Token::Run(Class::Any));
        }
        (*ones, *run) = (0, false);
    };
    for c in pattern.chars() {
        match c {
            '*' => run = true,
            '?' => ones += 1,
            c => {
                flush(&mut out, &mut ones, &mut run);
                out.push(Token::Char(c));
            }
        }
    }
    flush(&mut out, &mut ones, &mut run);
    out
}

fn cells(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Whether `pattern` matches `text`. IAM action names compare case-insensitively; ARNs do
/// not, so the caller says which. At most |pattern| × |text| steps.
pub fn matches(
    pattern: &str,
    text: &str,
    case_insensitive: bool,
    effort: &Effort,
) -> Result<bool, TooComplex> {
    // Reading the two costs their length, whatever follows.
    effort.step(cells(pattern.len() + text.len()))?;
    let pattern = tokens(&fold(pattern, case_insensitive));
    let text: Vec<char> = fold(text, case_insensitive).chars().collect();
    let mut held = Held::new(effort);
    held.hold(cells(pattern.len() + text.len()))?;
    // Greedy, going back to the last `*` on a mismatch: exact for `*` and `?`.
    let (mut p, mut t) = (0, 0);
    let mut last_run: Option<(usize, usize)> = None;
    while t < text.len() {
        effort.step(1)?;
        match pattern.get(p) {
            Some(Token::Run(_)) => {
                last_run = Some((p, t));
                p += 1;
                continue;
            }
            Some(Token::One(_)) => {
                (p, t) = (p + 1, t + 1);
                continue;
            }
            Some(Token::Char(c)) if *c == text[t] => {
                (p, t) = (p + 1, t + 1);
                continue;
            }
            _ => {}
        }
        match last_run {
            // The run takes one more character; try again after it.
            Some((run, taken_from)) => {
                last_run = Some((run, taken_from + 1));
                (p, t) = (run + 1, taken_from + 1);
            }
            None => return Ok(false),
        }
    }
    while let Some(Token::Run(_)) = pattern.get(p) {
        p += 1;
    }
    Ok(p == pattern.len())
}

/// Whether some text matches both patterns.
pub fn intersects(
    a: &str,
    b: &str,
    case_insensitive: bool,
    effort: &Effort,
) -> Result<bool, TooComplex> {
    effort.step(cells(a.len() + b.len()))?;
    intersect_tokens(
        &tokens(&fold(a, case_insensitive)),
        &tokens(&fold(b, case_insensitive)),
        effort,
    )
}

/// Whether some ARN matches both patterns, their wildcards read as IAM reads them in the
/// first fields (see `arn_fields`): two patterns of different services or accounts never
/// meet, whatever `*` stands in the fields before.
pub fn arns_meet(a: &str, b: &str, effort: &Effort) -> Result<bool, TooComplex> {
    effort.step(cells(a.len() + b.len()))?;
    intersect_tokens(
        &arn_fields(tokens(a), a.ends_with('*')),
        &arn_fields(tokens(b), b.ends_with('*')),
        effort,
    )
}

/// Whether `pattern`, every wildcard read at its widest (IAM lets a `*` that ends an ARN
/// field match beyond its colons: `arn:*:prod-oidc/*`), can match a resource of `arn`, read
/// as its writer meant it (`arn:*:s3:::bucket`: any partition, its `*` in its field).
pub fn reaches_arn(pattern: &str, arn: &str, effort: &Effort) -> Result<bool, TooComplex> {
    effort.step(cells(pattern.len() + arn.len()))?;
    intersect_tokens(
        &tokens(&fold(pattern, true)),
        &arn_fields(tokens(&fold(arn, true)), arn.ends_with('*')),
        effort,
    )
}

/// Whether some text matches both the pattern and the shape.
pub fn meets_shape(
    pattern: &str,
    shape: &Shape,
    case_insensitive: bool,
    effort: &Effort,
) -> Result<bool, TooComplex> {
    effort.step(cells(pattern.len() + shape.tokens.len()))?;
    let pattern = tokens(&fold(pattern, case_insensitive));
    let shape: Vec<Token> = shape
        .tokens
        .iter()
        .map(|t| match t {
            Token::Char(c) if case_insensitive => Token::Char(c.to_ascii_lowercase()),
            t => *t,
        })
        .collect();
    intersect_tokens(&pattern, &shape, effort)
}

/// Reachability over pairs of positions (i in a, j in b): the product automaton of the
/// two patterns. Both ends reached together means a common text exists. At most
/// (|a| + 1) × (|b| + 1) states, one bit each.
fn intersect_tokens(a: &[Token], b: &[Token], effort: &Effort) -> Result<bool, TooComplex> {
    let width = b.len() + 1;
    let states = (a.len() + 1) * width;
    let mut held = Held::new(effort);
    held.hold(cells(states / 64 + 1))?;
    let mut seen = vec![0u64; states / 64 + 1];
    let mut stack = vec![(0usize, 0usize)];
    while let Some((i, j)) = stack.pop() {
        let cell = i * width + j;
        if seen[cell / 64] & (1 << (cell % 64)) != 0 {
            continue;
        }
        seen[cell / 64] |= 1 << (cell % 64);
        effort.step(1)?;
        if i == a.len() && j == b.len() {
            return Ok(true);
        }
        let (ta, tb) = (a.get(i).copied(), b.get(j).copied());
        // A run may match nothing: skip it.
        if let Some(Token::Run(_)) = ta {
            stack.push((i + 1, j));
        }
        if let Some(Token::Run(_)) = tb {
            stack.push((i, j + 1));
        }
        let (Some(ta), Some(tb)) = (ta, tb) else {
            continue;
        };
        if !compatible(ta, tb) {
            continue;
        }
        match (ta, tb) {
            // Two runs eating one character together is never needed: drop it from the
            // text and both still match.
            (Token::Run(_), Token::Run(_)) => {}
            // A run on one side swallows one character the other side produces.
            (Token::Run(_), _) => stack.push((i, j + 1)),
            (_, Token::Run(_)) => stack.push((i + 1, j)),
            _ => stack.push((i + 1, j + 1)),
        }
    }
    Ok(false)
}

/// Whether every text `inner` matches, `outer` matches too (`iam:*` covers `iam:Pass*`;
/// `arn:aws:s3:::shop-*` covers `arn:aws:s3:::shop-orders/*` but not
/// `arn:aws:s3:::shop*`). Exact: `inner` is walked as it is written (one position at a
/// time), `outer` as the set of places it could be at, over the characters `outer` names
/// there and one stand-in for every other. A place before one of `outer`'s `*` adds
/// nothing the `*` does not (whatever follows the place, the `*` matches it too), so the
/// set keeps its last `*` and what follows: the sets stay as small as `outer`'s stretches
/// between wildcards, however `inner` is spelled.
pub fn covers(
    outer: &str,
    inner: &str,
    case_insensitive: bool,
    effort: &Effort,
) -> Result<bool, TooComplex> {
    if beginnings_differ(outer, inner, case_insensitive, effort)? {
        return Ok(false);
    }
    effort.step(cells(outer.len() + inner.len()))?;
    let outer = arn_fields(tokens(&fold(outer, case_insensitive)), outer.ends_with('*'));
    let inner = tokens(&fold(inner, case_insensitive));
    let mut held = Held::new(effort);
    held.hold(cells(outer.len() + inner.len()))?;
    let mut places = Places::new(&outer, inner.len() + 1);
    let start = places.id(settle(&outer, vec![0]), &mut held)?;
    let mut stack = vec![(0usize, start)];
    while let Some((i, set)) = stack.pop() {
        effort.step(1)?;
        if !places.first_visit(set, i) {
            continue;
        }
        let Some(token) = inner.get(i).copied() else {
            // A text inner accepts here that outer does not.
            if !places.accepts(set) {
                return Ok(false);
            }
            continue;
        };
        let next = match token {
            Token::Char(c) => {
                match places.after(set, Some(c), &mut held)? {
                    Some(moved) => stack.push((i + 1, moved)),
                    // Inner still matches something from here (every pattern does); outer
                    // nothing.
                    None => return Ok(false),
                }
                continue;
            }
            Token::One(_) => i + 1,
            Token::Run(_) => {
                // The run may stop here.
                stack.push((i + 1, set));
                i
            }
        };
        for s in 0..places.ways(set) {
            match places.way(set, s, &mut held)? {
                Some(moved) => stack.push((next, moved)),
                None => return Ok(false),
            }
        }
    }
    Ok(true)
}

/// One of `outer`'s sets of places, as [`covers`] meets it.
struct PlaceSet {
    places: Vec<usize>,
    /// The characters that tell its ways apart (`None`: every other), and where each leads
    /// once worked out (`Some(None)`: nowhere, outer matches nothing more).
    ways: Vec<(Option<char>, Option<Option<usize>>)>,
    /// The positions of `inner` met with this set already, one bit each.
    visited: Vec<u64>,
}

/// `outer`'s sets of places, made as they are met and numbered, each way out of each
/// worked out once however many of `inner`'s positions meet the set.
struct Places<'p> {
    outer: &'p [Token],
    positions: usize,
    sets: Vec<PlaceSet>,
    ids: std::collections::HashMap<Vec<usize>, usize>,
}

impl<'p> Places<'p> {
    fn new(outer: &'p [Token], positions: usize) -> Self {
        Self {
            outer,
            positions,
            sets: Vec::new(),
            ids: std::collections::HashMap::new(),
        }
    }

    fn id(&mut self, places: Vec<usize>, held: &mut Held<'_>) -> Result<usize, TooComplex> {
        if let Some(id) = self.ids.get(&places) {
            return Ok(*id);
        }
        let ways: Vec<_> = symbols(self.outer, &places)
            .into_iter()
            .map(|symbol| (symbol, None))
            .collect();
        let words = self.positions / 64 + 1;
        held.hold(cells(2 * places.len() + 2 * ways.len() + words))?;
        let id = self.sets.len();
        self.ids.insert(places.clone(), id);
        self.sets.push(PlaceSet {
            places,
            ways,
            visited: vec![0; words],
        });
        Ok(id)
    }

    /// Marks `position` met with the set; whether it was the first time.
    fn first_visit(&mut self, set: usize, position: usize) -> bool {
        let word = &mut self.sets[set].visited[position / 64];
        let bit = 1 << (position % 64);
        let first = *word & bit == 0;
        *word |= bit;
        first
    }

    fn accepts(&self, set: usize) -> bool {
        self.sets[set].places.contains(&self.outer.len())
    }

    fn ways(&self, set: usize) -> usize {
        self.sets[set].ways.len()
    }

    /// Where the set's `n`th way leads.
    fn way(
        &mut self,
        set: usize,
        n: usize,
        held: &mut Held<'_>,
    ) -> Result<Option<usize>, TooComplex> {
        let (symbol, known) = self.sets[set].ways[n];
        if let Some(known) = known {
            return Ok(known);
        }
        held.effort().step(cells(self.sets[set].places.len()))?;
        let moved = step(self.outer, &self.sets[set].places, symbol);
        let moved = if moved.is_empty() {
            None
        } else {
            Some(self.id(moved, held)?)
        };
        self.sets[set].ways[n].1 = Some(moved);
        Ok(moved)
    }

    /// Where the set goes on one character.
    fn after(
        &mut self,
        set: usize,
        symbol: Option<char>,
        held: &mut Held<'_>,
    ) -> Result<Option<usize>, TooComplex> {
        // A character the set does not name goes the way of every other.
        let n = self.sets[set]
            .ways
            .iter()
            .position(|(s, _)| *s == symbol)
            .unwrap_or(self.sets[set].ways.len() - 1);
        self.way(set, n, held)
    }
}

/// The characters that lead `outer`'s places to different sets: those it names there, and
/// `None` for every other.
fn symbols(outer: &[Token], places: &[usize]) -> Vec<Option<char>> {
    let mut named: Vec<Option<char>> = places
        .iter()
        .flat_map(|&p| match outer.get(p) {
            Some(Token::Char(c)) => vec![Some(*c)],
            // A wildcard that stops at some characters treats those apart from the rest.
            Some(Token::One(Class::Except(stops)) | Token::Run(Class::Except(stops))) => {
                stops.iter().copied().map(Some).collect()
            }
            _ => Vec::new(),
        })
        .collect();
    named.sort_unstable();
    named.dedup();
    named.push(None);
    named
}

/// Where `outer`'s places go on one character (`None`: one it does not name).
fn step(outer: &[Token], places: &[usize], symbol: Option<char>) -> Vec<usize> {
    let mut next = Vec::with_capacity(places.len() + 1);
    for &p in places {
        // `None` is a character no token at these places names, and none stops at.
        let admits = |class: Class| symbol.is_none_or(|c| class.admits(c));
        match (outer.get(p), symbol) {
            (Some(Token::Run(class)), _) if admits(*class) => next.push(p),
            (Some(Token::One(class)), _) if admits(*class) => next.push(p + 1),
            (Some(Token::Char(c)), Some(s)) if *c == s => next.push(p + 1),
            _ => {}
        }
    }
    settle(outer, next)
}

/// The places as a set: with the place after each `*` (a run may match nothing), without
/// the places before the last `*` (it matches whatever they would), sorted.
fn settle(outer: &[Token], mut places: Vec<usize>) -> Vec<usize> {
    places.sort_unstable();
    places.dedup();
    // Places only move forward, so one pass in order adds what each run lets through.
    let mut i = 0;
    while i < places.len() {
        let p = places[i];
        if let Some(Token::Run(_)) = outer.get(p)
            && places.get(i + 1) != Some(&(p + 1))
        {
            places.insert(i + 1, p + 1);
        }
        i += 1;
    }
    // Only a `*` that matches anything holds what a place before it would match.
    if let Some(last_run) = places
        .iter()
        .rposition(|&p| matches!(outer.get(p), Some(Token::Run(Class::Any))))
    {
        places.drain(..last_run);
    }
    places
}

/// An ARN pattern's wildcards as IAM reads them: within the partition, service, region and
/// account fields a `*` or `?` stays in its field (`arn:*:s3:::shop.*` does not hold
/// `arn:aws:s3:::payments.orders/x:s3:::shop.y`, which names payments' objects); from the
/// resource part on, and for the `*` that ends the pattern (as written: `*?` ends in `?`),
/// it matches anything.
fn arn_fields(mut pattern: Vec<Token>, ends_with_star: bool) -> Vec<Token> {
    let is_arn = pattern
        .iter()
        .take(4)
        .copied()
        .eq("arn:".chars().map(Token::Char));
    if !is_arn {
        return pattern;
    }
    let last = pattern.len().saturating_sub(1);
    let mut colons = 0;
    for (i, token) in pattern.iter_mut().enumerate() {
        match token {
            Token::Char(':') => colons += 1,
            Token::Run(Class::Any) if colons < 5 && (i < last || !ends_with_star) => {
                *token = Token::Run(Class::Except(FIELD_END));
            }
            Token::One(Class::Any) if colons < 5 => *token = Token::One(Class::Except(FIELD_END)),
            _ => {}
        }
        if colons >= 5 {
            break;
        }
    }
    pattern
}

/// Whether the two patterns' fixed beginnings (before either's first wildcard) already
/// differ: most pairs of a resource and an allowed pattern name different buckets or
/// services, and this tells so at the cost of the characters compared.
fn beginnings_differ(
    outer: &str,
    inner: &str,
    case_insensitive: bool,
    effort: &Effort,
) -> Result<bool, TooComplex> {
    let fold = |c: char| {
        if case_insensitive {
            c.to_ascii_lowercase()
        } else {
            c
        }
    };
    for (compared, (o, i)) in outer.chars().zip(inner.chars()).enumerate() {
        if matches!(o, '*' | '?') || matches!(i, '*' | '?') {
            effort.step(cells(compared + 1))?;
            return Ok(false);
        }
        if fold(o) != fold(i) {
            effort.step(cells(compared + 1))?;
            return Ok(true);
        }
    }
    effort.step(cells(outer.len().min(inner.len()) + 1))?;
    Ok(false)
}

/// A pattern with character classes, built piece by piece, for [`meets_shape`].
#[derive(Clone, Debug, Default)]
pub struct Shape {
    tokens: Vec<Token>,
}

/// What ends an ARN's field.
const FIELD_END: &[char] = &[':'];
/// What ends a word of an ARN's resource part (`secret:`, `key/`).
const WORD_END: &[char] = &[':', '/'];

impl Shape {
    pub fn new() -> Self {
        Self::default()
    }

    /// These characters, as written.
    pub fn literal(mut self, text: &str) -> Self {
        self.tokens.extend(text.chars().map(Token::Char));
        self
    }

    /// Any one field of an ARN: a run of characters other than `:`.
    pub fn field(mut self) -> Self {
        self.tokens.push(Token::Run(Class::Except(FIELD_END)));
        self
    }

    /// A field matching a glob (`*` and `?` confined to the field).
    pub fn field_like(mut self, glob: &str) -> Self {
        self.tokens
            .extend(tokens(glob).into_iter().map(|t| match t {
                Token::One(_) => Token::One(Class::Except(FIELD_END)),
                Token::Run(_) => Token::Run(Class::Except(FIELD_END)),
                t => t,
            }));
        self
    }

    /// A word of a resource part: characters other than `:` and `/`.
    pub fn word(mut self) -> Self {
        self.tokens.push(Token::Run(Class::Except(WORD_END)));
        self
    }

    /// A name nobody wrote, ending its ARN: it begins with a character the other side of
    /// the question never names and goes on with anything but `:` (so `*`, `?*`, `*1` and
    /// `*shop*` all match such names; only a name that begins with fixed text does not).
    pub fn unnamed(mut self) -> Self {
        self.tokens.push(Token::One(Class::Fresh));
        self.tokens.push(Token::Run(Class::Except(FIELD_END)));
        self
    }
}

#[cfg(test)]
mod tests;
