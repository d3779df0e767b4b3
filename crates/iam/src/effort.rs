//! The bound on one judgement's work. Whether one wildcard pattern lies within another is
//! hard in general (each `*` can multiply what must be explored), and the patterns come
//! from namespace owners: without a bound, one binding could keep the controller and the
//! webhook busy for minutes. Work is counted in steps (time) and in stored cells
//! (memory), never in wall-clock time, so that `plan`, the controller and the webhook
//! reach the same verdict on any machine.

use std::cell::Cell;

use crate::error::Violation;

/// Steps one binding's judgement may take: every guardrail over every statement and
/// managed policy. A realistic binding takes a few thousand; the largest AWS managed
/// policies (ReadOnlyAccess, ~2,000 actions) under the default rules take a few million.
/// In a release build a step is a few nanoseconds, so the bound is tens of milliseconds.
pub const JUDGEMENT_STEPS: u64 = 2_000_000;

/// Cells (positions of a pattern, one machine word each) one judgement may hold at once in
/// its explored states and visited sets: 2 Mi cells are 16 MiB.
pub const JUDGEMENT_CELLS: u64 = 2 * 1024 * 1024;

/// What is left of one judgement's allowance. Shared by reference through a judgement
/// (single-threaded: a judgement never leaves its thread).
#[derive(Debug)]
pub struct Effort {
    steps_left: Cell<u64>,
    cells_left: Cell<u64>,
    steps_limit: u64,
    cells_limit: u64,
}

/// The judgement ran out of its allowance: the answer is unknown, and a guardrail must
/// refuse what it cannot judge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooComplex;

impl Effort {
    pub fn new(steps: u64, cells: u64) -> Self {
        Self {
            steps_left: Cell::new(steps),
            cells_left: Cell::new(cells),
            steps_limit: steps,
            cells_limit: cells,
        }
    }

    /// The allowance of one binding's (or one managed policy's) judgement.
    pub fn for_judgement() -> Self {
        Self::new(JUDGEMENT_STEPS, JUDGEMENT_CELLS)
    }

    /// Takes `n` steps, or fails when they are not left (and takes none).
    pub fn step(&self, n: u64) -> Result<(), TooComplex> {
        let left = self.steps_left.get();
        if n > left {
            self.steps_left.set(0);
            return Err(TooComplex);
        }
        self.steps_left.set(left - n);
        Ok(())
    }

    /// Holds `n` cells until [`Effort::release`]; fails when they are not free.
    pub fn hold(&self, n: u64) -> Result<(), TooComplex> {
        let left = self.cells_left.get();
        if n > left {
            return Err(TooComplex);
        }
        self.cells_left.set(left - n);
        Ok(())
    }

    /// Gives back cells held for work that is over.
    pub fn release(&self, n: u64) {
        self.cells_left
            .set((self.cells_left.get() + n).min(self.cells_limit));
    }

    /// Steps taken so far.
    pub fn steps_taken(&self) -> u64 {
        self.steps_limit - self.steps_left.get()
    }

    /// Whether the allowance ran out (every further question fails at once).
    pub fn exhausted(&self) -> bool {
        self.steps_left.get() == 0
    }

    /// The bound, as a refusal names it.
    pub fn steps_limit(&self) -> u64 {
        self.steps_limit
    }

    pub fn cells_limit(&self) -> u64 {
        self.cells_limit
    }
}

/// Cells held for the life of a value, given back when it is dropped.
pub(crate) struct Held<'a> {
    effort: &'a Effort,
    cells: u64,
}

impl<'a> Held<'a> {
    pub(crate) fn new(effort: &'a Effort) -> Self {
        Self { effort, cells: 0 }
    }

    pub(crate) fn hold(&mut self, n: u64) -> Result<(), TooComplex> {
        self.effort.hold(n)?;
        self.cells += n;
        Ok(())
    }

    pub(crate) fn effort(&self) -> &'a Effort {
        self.effort
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.effort.release(self.cells);
    }
}

/// The violations of one judgement, and the bound it runs under. Once the bound runs out,
/// the field where it did is refused (once), and the questions after it go unanswered:
/// what cannot be judged is refused, never let through.
pub struct Judgement<'e> {
    pub effort: &'e Effort,
    pub violations: Vec<Violation>,
    out_of_bound: bool,
}

impl<'e> Judgement<'e> {
    pub fn new(effort: &'e Effort) -> Self {
        Self {
            effort,
            violations: Vec::new(),
            out_of_bound: false,
        }
    }

    /// The answer to one question about `field`: `None` when the bound ran out (now,
    /// then `field` is refused for it, or before).
    pub fn answer(&mut self, field: &str, answer: Result<bool, TooComplex>) -> Option<bool> {
        match answer {
            Ok(answer) if !self.out_of_bound => Some(answer),
            Ok(_) => None,
            Err(TooComplex) => {
                if !self.out_of_bound {
                    self.out_of_bound = true;
                    self.violations.push(too_complex(field, self.effort));
                }
                None
            }
        }
    }

    pub fn refuse(&mut self, violation: Violation) {
        self.violations.push(violation);
    }

    /// Whether the bound ran out.
    pub fn out_of_bound(&self) -> bool {
        self.out_of_bound
    }
}

/// The refusal of what could not be judged within the bound.
pub fn too_complex(field: &str, effort: &Effort) -> Violation {
    Violation::guardrail(
        field,
        format!(
            "the guardrails could not judge this within the operator's bound ({} steps, {} \
             cells of memory for one binding): write fewer wildcards here (each * multiplies \
             what a guardrail must explore), or split the statement",
            effort.steps_limit(),
            effort.cells_limit()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_run_out_and_stay_out() {
        let effort = Effort::new(10, 4);
        assert_eq!(effort.step(6), Ok(()));
        assert_eq!(effort.step(5), Err(TooComplex));
        assert!(effort.exhausted());
        assert_eq!(effort.step(1), Err(TooComplex));
        assert_eq!(effort.steps_taken(), 10);
    }

    #[test]
    fn cells_are_given_back_when_their_work_is_over() {
        let effort = Effort::new(10, 4);
        {
            let mut held = Held::new(&effort);
            assert_eq!(held.hold(3), Ok(()));
            assert_eq!(effort.hold(2), Err(TooComplex));
        }
        assert_eq!(effort.hold(4), Ok(()));
    }
}
