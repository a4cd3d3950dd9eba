//! Documentation sections of the RWD functions.

use datafusion::logical_expr::DocSection;

/// Episodes and eras.
pub const EPISODES: DocSection = DocSection {
    include: true,
    label: "RWD: episodes",
    description: Some("Merging a person's records into continuous episodes (OHDSI eras)."),
};

/// Windows around an index date.
pub const WINDOWS: DocSection = DocSection {
    include: true,
    label: "RWD: exposure windows",
    description: Some("Day windows around an index date and person-time at risk."),
};

/// Cohort bitmaps.
pub const COHORTS: DocSection = DocSection {
    include: true,
    label: "RWD: cohort bitmaps",
    description: Some("Sets of person_id as 32-bit roaring bitmaps in the portable format."),
};

/// Vocabulary graph.
pub const VOCABULARY: DocSection = DocSection {
    include: true,
    label: "RWD: vocabulary graph",
    description: Some("Concept hierarchies and relationships of the store's vocabulary."),
};
