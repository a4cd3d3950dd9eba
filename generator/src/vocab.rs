//! The generated store's vocabulary: real ICD-10 chapters, blocks and codes,
//! real ATC levels 1–5, ingredients and drug products under them, with a
//! complete `concept_ancestor`.

use std::collections::{BTreeMap, BTreeSet};

/// One concept of the vocabulary.
#[derive(Debug, Clone)]
pub struct Concept {
    pub id: i64,
    pub name: String,
    pub domain: &'static str,
    pub vocabulary: &'static str,
    pub class: &'static str,
    pub standard: Option<&'static str>,
    pub code: String,
    /// Validity: first and last day (days since the epoch; `None`: the
    /// vocabulary's defaults) and the invalid reason.
    pub valid_start: Option<i32>,
    pub valid_end: Option<i32>,
    pub invalid: Option<&'static str>,
}

/// The vocabulary: concepts and their `Is a` edges (child, parent).
#[derive(Debug, Default)]
pub struct Vocabulary {
    pub concepts: Vec<Concept>,
    pub is_a: Vec<(i64, i64)>,
    /// Other relationships: (from, to, relationship id); written with their reverse.
    pub relationships: Vec<(i64, i64, &'static str)>,
    /// Japanese names: (concept, name).
    pub synonyms: Vec<(i64, String)>,
    /// The source codes claims are written in (see [`crate::jp_codes`]).
    pub receipt: crate::jp_codes::ReceiptCodes,
    by_code: BTreeMap<(&'static str, String), i64>,
}

/// ICD-10 chapters used: (roman numeral, range, title).
const ICD_CHAPTERS: &[(&str, &str, &str)] = &[
    (
        "IV",
        "E00-E90",
        "Endocrine, nutritional and metabolic diseases",
    ),
    ("V", "F00-F99", "Mental and behavioural disorders"),
    ("IX", "I00-I99", "Diseases of the circulatory system"),
    ("X", "J00-J99", "Diseases of the respiratory system"),
    ("XI", "K00-K93", "Diseases of the digestive system"),
    (
        "XIII",
        "M00-M99",
        "Diseases of the musculoskeletal system and connective tissue",
    ),
    (
        "XVIII",
        "R00-R99",
        "Symptoms, signs and abnormal clinical and laboratory findings, not elsewhere classified",
    ),
    (
        "XIX",
        "S00-T98",
        "Injury, poisoning and certain other consequences of external causes",
    ),
];

/// ICD-10 blocks used: (range, chapter range, title).
const ICD_BLOCKS: &[(&str, &str, &str)] = &[
    ("E10-E14", "E00-E90", "Diabetes mellitus"),
    ("E70-E90", "E00-E90", "Metabolic disorders"),
    ("F30-F39", "F00-F99", "Mood [affective] disorders"),
    ("I10-I15", "I00-I99", "Hypertensive diseases"),
    ("I20-I25", "I00-I99", "Ischaemic heart diseases"),
    ("I60-I69", "I00-I99", "Cerebrovascular diseases"),
    ("J09-J18", "J00-J99", "Influenza and pneumonia"),
    ("J40-J47", "J00-J99", "Chronic lower respiratory diseases"),
    (
        "K20-K31",
        "K00-K93",
        "Diseases of oesophagus, stomach and duodenum",
    ),
    (
        "K90-K93",
        "K00-K93",
        "Other diseases of the digestive system",
    ),
    ("M15-M19", "M00-M99", "Arthrosis"),
    ("M50-M54", "M00-M99", "Other dorsopathies"),
    ("R50-R69", "R00-R99", "General symptoms and signs"),
    ("S70-S79", "S00-T98", "Injuries to the hip and thigh"),
];

/// ICD-10 categories and codes used: (code, block, title). Four-character codes sit under their category.
const ICD_CODES: &[(&str, &str, &str)] = &[
    ("E11", "E10-E14", "Type 2 diabetes mellitus"),
    (
        "E11.9",
        "E10-E14",
        "Type 2 diabetes mellitus without complications",
    ),
    (
        "E78",
        "E70-E90",
        "Disorders of lipoprotein metabolism and other lipidaemias",
    ),
    ("E78.5", "E70-E90", "Hyperlipidaemia, unspecified"),
    ("F32", "F30-F39", "Depressive episode"),
    ("F32.9", "F30-F39", "Depressive episode, unspecified"),
    ("I10", "I10-I15", "Essential (primary) hypertension"),
    ("I21", "I20-I25", "Acute myocardial infarction"),
    (
        "I21.9",
        "I20-I25",
        "Acute myocardial infarction, unspecified",
    ),
    ("I63", "I60-I69", "Cerebral infarction"),
    ("I63.9", "I60-I69", "Cerebral infarction, unspecified"),
    ("J18", "J09-J18", "Pneumonia, organism unspecified"),
    ("J18.9", "J09-J18", "Pneumonia, unspecified"),
    ("J45", "J40-J47", "Asthma"),
    ("J45.9", "J40-J47", "Asthma, unspecified"),
    ("K21", "K20-K31", "Gastro-oesophageal reflux disease"),
    (
        "K21.9",
        "K20-K31",
        "Gastro-oesophageal reflux disease without oesophagitis",
    ),
    ("K92", "K90-K93", "Other diseases of digestive system"),
    (
        "K92.2",
        "K90-K93",
        "Gastrointestinal haemorrhage, unspecified",
    ),
    ("M17", "M15-M19", "Gonarthrosis [arthrosis of knee]"),
    ("M17.9", "M15-M19", "Gonarthrosis, unspecified"),
    ("M54", "M50-M54", "Dorsalgia"),
    ("M54.5", "M50-M54", "Low back pain"),
    ("R60", "R50-R69", "Oedema, not elsewhere classified"),
    ("R60.0", "R50-R69", "Localized oedema"),
    ("S72", "S70-S79", "Fracture of femur"),
    ("S72.0", "S70-S79", "Fracture of neck of femur"),
];

/// ATC classes used, levels 1–4: (code, title).
const ATC_CLASSES: &[(&str, &str)] = &[
    ("A", "ALIMENTARY TRACT AND METABOLISM"),
    ("A02", "DRUGS FOR ACID RELATED DISORDERS"),
    (
        "A02B",
        "DRUGS FOR PEPTIC ULCER AND GASTRO-OESOPHAGEAL REFLUX DISEASE (GORD)",
    ),
    ("A02BC", "Proton pump inhibitors"),
    ("A10", "DRUGS USED IN DIABETES"),
    ("A10B", "BLOOD GLUCOSE LOWERING DRUGS, EXCL. INSULINS"),
    ("A10BA", "Biguanides"),
    ("A10BH", "Dipeptidyl peptidase 4 (DPP-4) inhibitors"),
    ("C", "CARDIOVASCULAR SYSTEM"),
    ("C03", "DIURETICS"),
    ("C03C", "HIGH-CEILING DIURETICS"),
    ("C03CA", "Sulfonamides, plain"),
    ("C08", "CALCIUM CHANNEL BLOCKERS"),
    (
        "C08C",
        "SELECTIVE CALCIUM CHANNEL BLOCKERS WITH MAINLY VASCULAR EFFECTS",
    ),
    ("C08CA", "Dihydropyridine derivatives"),
    ("C09", "AGENTS ACTING ON THE RENIN-ANGIOTENSIN SYSTEM"),
    ("C09C", "ANGIOTENSIN II RECEPTOR BLOCKERS (ARBs), PLAIN"),
    ("C09CA", "Angiotensin II receptor blockers (ARBs), plain"),
    ("C10", "LIPID MODIFYING AGENTS"),
    ("C10A", "LIPID MODIFYING AGENTS, PLAIN"),
    ("C10AA", "HMG CoA reductase inhibitors"),
    ("M", "MUSCULO-SKELETAL SYSTEM"),
    ("M01", "ANTIINFLAMMATORY AND ANTIRHEUMATIC PRODUCTS"),
    (
        "M01A",
        "ANTIINFLAMMATORY AND ANTIRHEUMATIC PRODUCTS, NON-STEROIDS",
    ),
    ("M01AB", "Acetic acid derivatives and related substances"),
    ("M01AE", "Propionic acid derivatives"),
    ("M01AH", "Coxibs"),
    ("N", "NERVOUS SYSTEM"),
    ("N02", "ANALGESICS"),
    ("N02B", "OTHER ANALGESICS AND ANTIPYRETICS"),
    ("N02BE", "Anilides"),
    ("N06", "PSYCHOANALEPTICS"),
    ("N06A", "ANTIDEPRESSANTS"),
    ("N06AB", "Selective serotonin reuptake inhibitors"),
    ("R", "RESPIRATORY SYSTEM"),
    ("R03", "DRUGS FOR OBSTRUCTIVE AIRWAY DISEASES"),
    ("R03A", "ADRENERGICS, INHALANTS"),
    ("R03AC", "Selective beta-2-adrenoreceptor agonists"),
];

/// Ingredients (ATC level 5) and their products: (ATC code, ingredient, [(product, strength)]).
pub const DRUGS: &[(&str, &str, &[&str])] = &[
    (
        "A02BC01",
        "omeprazole",
        &["omeprazole 20 MG Delayed Release Oral Tablet"],
    ),
    (
        "A02BC03",
        "lansoprazole",
        &[
            "lansoprazole 15 MG Orally Disintegrating Tablet",
            "lansoprazole 30 MG Orally Disintegrating Tablet",
        ],
    ),
    (
        "A10BA02",
        "metformin",
        &[
            "metformin hydrochloride 250 MG Oral Tablet",
            "metformin hydrochloride 500 MG Oral Tablet",
        ],
    ),
    ("A10BH01", "sitagliptin", &["sitagliptin 50 MG Oral Tablet"]),
    (
        "C03CA01",
        "furosemide",
        &[
            "furosemide 20 MG Oral Tablet",
            "furosemide 40 MG Oral Tablet",
        ],
    ),
    (
        "C08CA01",
        "amlodipine",
        &[
            "amlodipine 2.5 MG Oral Tablet",
            "amlodipine 5 MG Oral Tablet",
        ],
    ),
    (
        "C09CA06",
        "candesartan",
        &["candesartan cilexetil 8 MG Oral Tablet"],
    ),
    (
        "C10AA05",
        "atorvastatin",
        &["atorvastatin 10 MG Oral Tablet"],
    ),
    (
        "C10AA07",
        "rosuvastatin",
        &[
            "rosuvastatin 2.5 MG Oral Tablet",
            "rosuvastatin 5 MG Oral Tablet",
        ],
    ),
    (
        "M01AB05",
        "diclofenac",
        &["diclofenac sodium 25 MG Oral Tablet"],
    ),
    (
        "M01AE01",
        "ibuprofen",
        &[
            "ibuprofen 100 MG Oral Tablet",
            "ibuprofen 200 MG Oral Tablet",
        ],
    ),
    ("M01AH01", "celecoxib", &["celecoxib 100 MG Oral Tablet"]),
    (
        "N02BE01",
        "acetaminophen",
        &[
            "acetaminophen 200 MG Oral Tablet",
            "acetaminophen 500 MG Oral Tablet",
        ],
    ),
    ("N06AB06", "sertraline", &["sertraline 25 MG Oral Tablet"]),
    (
        "R03AC02",
        "salbutamol",
        &["salbutamol 0.1 MG/ACTUAT Metered Dose Inhaler"],
    ),
];

/// Other concepts: (id, name, domain, vocabulary, class, code).
const OTHER: &[(i64, &str, &str, &str, &str, &str)] = &[
    (8507, "MALE", "Gender", "Gender", "Gender", "M"),
    (8532, "FEMALE", "Gender", "Gender", "Gender", "F"),
    (9201, "Inpatient Visit", "Visit", "Visit", "Visit", "IP"),
    (9202, "Outpatient Visit", "Visit", "Visit", "Visit", "OP"),
    (
        32810,
        "Claim",
        "Type Concept",
        "Type Concept",
        "Type Concept",
        "OMOP4976890",
    ),
    (
        32817,
        "EHR",
        "Type Concept",
        "Type Concept",
        "Type Concept",
        "OMOP4976890",
    ),
    (
        4_000_001,
        "Upper gastrointestinal endoscopy",
        "Procedure",
        "JP Procedure",
        "Procedure",
        "K653",
    ),
    (
        4_000_002,
        "Femoral neck fracture surgery (osteosynthesis)",
        "Procedure",
        "JP Procedure",
        "Procedure",
        "K046",
    ),
    (
        4_000_003,
        "Hemiarthroplasty of hip",
        "Procedure",
        "JP Procedure",
        "Procedure",
        "K081",
    ),
    (
        4_000_004,
        "Computed tomography of head",
        "Procedure",
        "JP Procedure",
        "Procedure",
        "E200",
    ),
    (
        4_000_005,
        "Percutaneous coronary intervention",
        "Procedure",
        "JP Procedure",
        "Procedure",
        "K549",
    ),
    (
        4_000_006,
        "Influenza vaccination",
        "Procedure",
        "JP Procedure",
        "Procedure",
        "V001",
    ),
    (
        5_000_001,
        "Body mass index",
        "Measurement",
        "JP Health Check",
        "Lab Test",
        "BMI",
    ),
    (
        5_000_002,
        "Systolic blood pressure",
        "Measurement",
        "JP Health Check",
        "Clinical Observation",
        "SBP",
    ),
    (
        5_000_003,
        "Hemoglobin A1c (NGSP)",
        "Measurement",
        "JP Health Check",
        "Lab Test",
        "HBA1C",
    ),
    (
        5_000_004,
        "LDL cholesterol",
        "Measurement",
        "JP Health Check",
        "Lab Test",
        "LDL",
    ),
    (
        5_100_001,
        "kilogram per square meter",
        "Unit",
        "UCUM",
        "Unit",
        "kg/m2",
    ),
    (
        5_100_002,
        "millimeter mercury column",
        "Unit",
        "UCUM",
        "Unit",
        "mm[Hg]",
    ),
    (5_100_003, "percent", "Unit", "UCUM", "Unit", "%"),
    (
        5_100_004,
        "milligram per deciliter",
        "Unit",
        "UCUM",
        "Unit",
        "mg/dL",
    ),
    (
        6_000_001,
        "Support level 1 (yoshien 1)",
        "Observation",
        "JP Care Level",
        "Care Level",
        "12",
    ),
    (
        6_000_002,
        "Support level 2 (yoshien 2)",
        "Observation",
        "JP Care Level",
        "Care Level",
        "13",
    ),
    (
        6_000_003,
        "Care level 1 (yokaigo 1)",
        "Observation",
        "JP Care Level",
        "Care Level",
        "21",
    ),
    (
        6_000_004,
        "Care level 2 (yokaigo 2)",
        "Observation",
        "JP Care Level",
        "Care Level",
        "22",
    ),
    (
        6_000_005,
        "Care level 3 (yokaigo 3)",
        "Observation",
        "JP Care Level",
        "Care Level",
        "23",
    ),
    (
        6_000_006,
        "Care level 4 (yokaigo 4)",
        "Observation",
        "JP Care Level",
        "Care Level",
        "24",
    ),
    (
        6_000_007,
        "Care level 5 (yokaigo 5)",
        "Observation",
        "JP Care Level",
        "Care Level",
        "25",
    ),
    (
        6_100_001,
        "Home-visit care",
        "Observation",
        "JP Care Service",
        "Care Service",
        "11",
    ),
    (
        6_100_002,
        "Day care service",
        "Observation",
        "JP Care Service",
        "Care Service",
        "15",
    ),
    (
        6_100_003,
        "Short-stay care",
        "Observation",
        "JP Care Service",
        "Care Service",
        "21",
    ),
    (
        6_100_004,
        "Welfare facility for the elderly",
        "Observation",
        "JP Care Service",
        "Care Service",
        "51",
    ),
];

impl Vocabulary {
    /// Builds the whole vocabulary.
    pub fn build() -> Vocabulary {
        let mut v = Vocabulary::default();
        let mut next_icd = 1_000_001;
        for (numeral, range, title) in ICD_CHAPTERS {
            let id = v.add(
                next_icd,
                title,
                "Condition",
                "ICD10",
                "ICD10 Chapter",
                None,
                &format!("Chapter {numeral}"),
            );
            v.by_code.insert(("ICD10", range.to_string()), id);
            next_icd += 1;
        }
        for (range, chapter, title) in ICD_BLOCKS {
            let id = v.add(
                next_icd,
                title,
                "Condition",
                "ICD10",
                "ICD10 Hierarchy",
                None,
                range,
            );
            let parent = v.by_code[&("ICD10", chapter.to_string())];
            v.is_a.push((id, parent));
            next_icd += 1;
        }
        for (code, block, title) in ICD_CODES {
            let class = if code.contains('.') {
                "ICD10 code"
            } else {
                "ICD10 Hierarchy"
            };
            let id = v.add(
                next_icd,
                title,
                "Condition",
                "ICD10",
                class,
                Some("S"),
                code,
            );
            let parent = match code.split_once('.') {
                Some((category, _)) => v.by_code[&("ICD10", category.to_string())],
                None => v.by_code[&("ICD10", block.to_string())],
            };
            v.is_a.push((id, parent));
            next_icd += 1;
        }
        let mut next_atc = 2_000_001;
        for (code, title) in ATC_CLASSES {
            let class = match code.len() {
                1 => "ATC 1st",
                3 => "ATC 2nd",
                4 => "ATC 3rd",
                _ => "ATC 4th",
            };
            let id = v.add(next_atc, title, "Drug", "ATC", class, Some("C"), code);
            if code.len() > 1 {
                let parent_len = match code.len() {
                    3 => 1,
                    4 => 3,
                    _ => 4,
                };
                let parent = v.by_code[&("ATC", code[..parent_len].to_string())];
                v.is_a.push((id, parent));
            }
            next_atc += 1;
        }
        let mut next_ing = 3_000_001;
        let mut next_product = 3_100_001;
        for (atc, ingredient, products) in DRUGS {
            let atc5 = v.add(
                next_atc,
                ingredient,
                "Drug",
                "ATC",
                "ATC 5th",
                Some("C"),
                atc,
            );
            v.is_a
                .push((atc5, v.by_code[&("ATC", atc[..5].to_string())]));
            next_atc += 1;
            let ing = v.add(
                next_ing,
                ingredient,
                "Drug",
                "JP Drug",
                "Ingredient",
                Some("S"),
                &format!("ING-{atc}"),
            );
            v.is_a.push((ing, atc5));
            next_ing += 1;
            for (k, product) in products.iter().enumerate() {
                let p = v.add(
                    next_product,
                    product,
                    "Drug",
                    "JP Drug",
                    "Clinical Drug",
                    Some("S"),
                    &format!("{atc}-{}", k + 1),
                );
                v.is_a.push((p, ing));
                next_product += 1;
            }
        }
        for (id, name, domain, vocabulary, class, code) in OTHER {
            v.add(*id, name, domain, vocabulary, class, Some("S"), code);
        }
        v.receipt = crate::jp_codes::add(&mut v);
        v
    }

    /// Adds a non-standard (source) concept.
    pub(crate) fn add_source(
        &mut self,
        id: i64,
        name: &str,
        domain: &'static str,
        vocabulary: &'static str,
        class: &'static str,
        code: &str,
    ) -> i64 {
        self.add(id, name, domain, vocabulary, class, None, code)
    }

    /// Sets a concept's validity (`None` keeps the vocabulary's default date).
    pub(crate) fn set_validity(
        &mut self,
        id: i64,
        start: Option<i32>,
        end: Option<i32>,
        invalid: Option<&'static str>,
    ) {
        if let Some(c) = self.concepts.iter_mut().find(|c| c.id == id) {
            c.valid_start = start;
            c.valid_end = end;
            c.invalid = invalid;
        }
    }

    /// The concept id of a code in a vocabulary.
    pub fn code(&self, vocabulary: &'static str, code: &str) -> Option<i64> {
        self.by_code.get(&(vocabulary, code.to_owned())).copied()
    }

    fn add(
        &mut self,
        id: i64,
        name: &str,
        domain: &'static str,
        vocabulary: &'static str,
        class: &'static str,
        standard: Option<&'static str>,
        code: &str,
    ) -> i64 {
        self.concepts.push(Concept {
            id,
            name: name.to_owned(),
            domain,
            vocabulary,
            class,
            standard,
            code: code.to_owned(),
            valid_start: None,
            valid_end: None,
            invalid: None,
        });
        self.by_code.insert((vocabulary, code.to_owned()), id);
        id
    }

    /// Other concept ids for the vocabulary, as another store would number
    /// it: every id mapped to a distinct one drawn by `seed` (from
    /// 50,000,001 up, in shuffled order).
    pub fn renumbering(&self, seed: u64) -> BTreeMap<i64, i64> {
        use rand::SeedableRng;
        use rand::seq::SliceRandom;
        let mut new_ids: Vec<i64> = (0..self.concepts.len() as i64)
            .map(|i| 50_000_001 + i)
            .collect();
        new_ids.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        self.concepts.iter().map(|c| c.id).zip(new_ids).collect()
    }

    /// The same vocabulary under other ids (codes, names and hierarchy unchanged).
    pub fn renumbered(&self, map: &BTreeMap<i64, i64>) -> Vocabulary {
        let id = |old: i64| map.get(&old).copied().unwrap_or(old);
        let mut receipt = self.receipt.clone();
        receipt.drugs = receipt.drugs.into_iter().map(|(p, c)| (id(p), c)).collect();
        let mut v = Vocabulary {
            concepts: self.concepts.clone(),
            is_a: self.is_a.iter().map(|&(c, p)| (id(c), id(p))).collect(),
            relationships: self
                .relationships
                .iter()
                .map(|&(a, b, r)| (id(a), id(b), r))
                .collect(),
            synonyms: self
                .synonyms
                .iter()
                .map(|(c, n)| (id(*c), n.clone()))
                .collect(),
            receipt,
            by_code: self.by_code.clone(),
        };
        for c in &mut v.concepts {
            c.id = id(c.id);
        }
        for x in v.by_code.values_mut() {
            *x = id(*x);
        }
        v
    }

    /// The concept id of an ICD-10 code.
    pub fn icd(&self, code: &str) -> i64 {
        self.by_code[&("ICD10", code.to_owned())]
    }

    /// The product concept ids of an ingredient, by its ATC code.
    pub fn products(&self, atc: &str) -> Vec<i64> {
        let (_, _, products) = DRUGS.iter().find(|d| d.0 == atc).expect("known ATC code");
        (1..=products.len())
            .map(|k| self.by_code[&("JP Drug", format!("{atc}-{k}"))])
            .collect()
    }

    /// The ingredient concept id of an ATC level-5 code.
    pub fn ingredient(&self, atc: &str) -> i64 {
        self.by_code[&("JP Drug", format!("ING-{atc}"))]
    }

    /// The concept id of an ATC class code (any level).
    pub fn atc(&self, code: &str) -> i64 {
        self.by_code[&("ATC", code.to_owned())]
    }

    /// The transitive closure of `Is a`, with self rows:
    /// (ancestor, descendant, min levels, max levels).
    pub fn ancestors(&self) -> Vec<(i64, i64, i64, i64)> {
        let mut parents: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (c, p) in &self.is_a {
            parents.entry(*c).or_default().push(*p);
        }
        let mut out = Vec::new();
        for c in &self.concepts {
            let mut levels: BTreeMap<i64, (i64, i64)> = BTreeMap::new();
            let mut frontier: BTreeSet<i64> = BTreeSet::from([c.id]);
            let mut depth = 0;
            while !frontier.is_empty() {
                let mut next = BTreeSet::new();
                for id in frontier {
                    let e = levels.entry(id).or_insert((depth, depth));
                    e.1 = e.1.max(depth);
                    for p in parents.get(&id).into_iter().flatten() {
                        next.insert(*p);
                    }
                }
                frontier = next;
                depth += 1;
            }
            for (a, (min, max)) in levels {
                out.push((a, c.id, min, max));
            }
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchy_is_complete() {
        let v = Vocabulary::build();
        let anc = v.ancestors();
        let product = v.products("M01AE01")[0];
        let has = |a: i64, d: i64| anc.iter().any(|r| r.0 == a && r.1 == d);
        assert!(has(v.atc("M01A"), product));
        assert!(has(v.atc("M"), product));
        assert!(has(product, product));
        assert!(has(v.icd("K92"), v.icd("K92.2")));
        let chapter = v.by_code[&("ICD10", "K00-K93".to_string())];
        assert!(has(chapter, v.icd("K92.2")));
        let ids: BTreeSet<i64> = v.concepts.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), v.concepts.len(), "concept ids are unique");
    }
}
