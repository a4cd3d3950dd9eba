//! Disclosure classes: what each function may do with an analyst's data.
//!
//! Every RWD function is classified in the module that defines it; the
//! privacy layer refuses to analysts any function it cannot classify.

/// How a function may be used in an analyst's query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disclosure {
    /// Returns a value or NULL for every input: free to use.
    Total,
    /// Can fail on data, and the analyst rewrite replaces it with a total form.
    Hardened,
    /// Total when the arguments at these positions are constants.
    ConstantArguments(&'static [usize]),
    /// Builds, combines or measures person sets (bitmaps): under the person-set rules.
    PersonSet,
    /// Never available to analysts, with the reason.
    Refused(&'static str),
}

/// The class of an RWD function by name, `None` when it is not one.
pub fn disclosure(name: &str) -> Option<Disclosure> {
    [
        crate::windows::DISCLOSURE,
        crate::bitmaps::DISCLOSURE,
        crate::episodes::DISCLOSURE,
        crate::vocab::DISCLOSURE,
        crate::graph::DISCLOSURE,
        crate::concept_sets::DISCLOSURE,
    ]
    .iter()
    .flat_map(|list| list.iter())
    .find(|(n, _)| *n == name)
    .map(|(_, d)| *d)
}
