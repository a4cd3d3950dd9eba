//! The person model: one simulated life per person, written as the rows
//! each delivered source would hold about it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use crate::vocab::Vocabulary;
use crate::writer::{RowBuf, V};

/// First day of the simulated study period (2015-01-01), days since 1970-01-01.
pub const START: i32 = 16436;
/// Last day of the study period (2023-12-31).
pub const END: i32 = 19722;
/// Type concept of claims records.
const CLAIM: i64 = 32810;

/// The tables written: (source, table, columns as (name, type letter)).
pub const TABLES: &[(&str, &str, &[(&str, char)])] = &[
    (
        "ndb",
        "person",
        &[
            ("person_key", 's'),
            ("gender_concept_id", 'i'),
            ("year_of_birth", 'i'),
            ("month_of_birth", 'i'),
            ("day_of_birth", 'i'),
            ("gender_source_value", 's'),
            ("location_id", 'i'),
        ],
    ),
    (
        "ndb",
        "observation_period",
        &[
            ("observation_period_id", 'i'),
            ("person_key", 's'),
            ("observation_period_start_date", 'd'),
            ("observation_period_end_date", 'd'),
            ("period_type_concept_id", 'i'),
        ],
    ),
    (
        "ndb",
        "visit_occurrence",
        &[
            ("visit_occurrence_id", 'i'),
            ("person_key", 's'),
            ("visit_concept_id", 'i'),
            ("visit_start_date", 'd'),
            ("visit_end_date", 'd'),
            ("visit_type_concept_id", 'i'),
        ],
    ),
    (
        "ndb",
        "condition_occurrence",
        &[
            ("condition_occurrence_id", 'i'),
            ("person_key", 's'),
            ("condition_concept_id", 'i'),
            ("condition_start_date", 'd'),
            ("condition_type_concept_id", 'i'),
            ("visit_occurrence_id", 'i'),
            ("condition_source_value", 's'),
        ],
    ),
    (
        "ndb",
        "drug_exposure",
        &[
            ("drug_exposure_id", 'i'),
            ("person_key", 's'),
            ("drug_concept_id", 'i'),
            ("drug_exposure_start_date", 'd'),
            ("drug_exposure_end_date", 'd'),
            ("drug_type_concept_id", 'i'),
            ("quantity", 'f'),
            ("days_supply", 'i'),
            ("visit_occurrence_id", 'i'),
            ("drug_source_value", 's'),
        ],
    ),
    (
        "ndb",
        "procedure_occurrence",
        &[
            ("procedure_occurrence_id", 'i'),
            ("person_key", 's'),
            ("procedure_concept_id", 'i'),
            ("procedure_date", 'd'),
            ("procedure_type_concept_id", 'i'),
            ("visit_occurrence_id", 'i'),
            ("procedure_source_value", 's'),
        ],
    ),
    (
        "ndb",
        "measurement",
        &[
            ("measurement_id", 'i'),
            ("person_key", 's'),
            ("measurement_concept_id", 'i'),
            ("measurement_date", 'd'),
            ("measurement_type_concept_id", 'i'),
            ("value_as_number", 'f'),
            ("unit_concept_id", 'i'),
            ("measurement_source_value", 's'),
        ],
    ),
    (
        "ndb",
        "death",
        &[
            ("person_key", 's'),
            ("death_date", 'd'),
            ("death_type_concept_id", 'i'),
        ],
    ),
    (
        "dpc",
        "person",
        &[
            ("person_key", 's'),
            ("gender_concept_id", 'i'),
            ("year_of_birth", 'i'),
        ],
    ),
    (
        "dpc",
        "visit_occurrence",
        &[
            ("visit_occurrence_id", 'i'),
            ("person_key", 's'),
            ("visit_concept_id", 'i'),
            ("visit_start_date", 'd'),
            ("visit_end_date", 'd'),
            ("visit_type_concept_id", 'i'),
            ("dpc_code", 's'),
        ],
    ),
    (
        "dpc",
        "condition_occurrence",
        &[
            ("condition_occurrence_id", 'i'),
            ("person_key", 's'),
            ("condition_concept_id", 'i'),
            ("condition_start_date", 'd'),
            ("condition_type_concept_id", 'i'),
            ("visit_occurrence_id", 'i'),
            ("condition_source_value", 's'),
            ("condition_status_source_value", 's'),
        ],
    ),
    (
        "dpc",
        "procedure_occurrence",
        &[
            ("procedure_occurrence_id", 'i'),
            ("person_key", 's'),
            ("procedure_concept_id", 'i'),
            ("procedure_date", 'd'),
            ("procedure_type_concept_id", 'i'),
            ("visit_occurrence_id", 'i'),
            ("procedure_source_value", 's'),
        ],
    ),
    (
        "kaigo",
        "person",
        &[
            ("person_key", 's'),
            ("gender_concept_id", 'i'),
            ("year_of_birth", 'i'),
        ],
    ),
    (
        "kaigo",
        "care_certification",
        &[
            ("certification_id", 'i'),
            ("person_key", 's'),
            ("certification_date", 'd'),
            ("valid_start_date", 'd'),
            ("valid_end_date", 'd'),
            ("care_level_concept_id", 'i'),
            ("care_level", 's'),
        ],
    ),
    (
        "kaigo",
        "care_service",
        &[
            ("care_service_id", 'i'),
            ("person_key", 's'),
            ("service_month", 'd'),
            ("service_concept_id", 'i'),
            ("service_type", 's'),
            ("units", 'i'),
        ],
    ),
    (
        "linkage",
        "person_link",
        &[("source", 's'), ("person_key", 's'), ("link_key", 's')],
    ),
];

#[derive(Clone, Copy)]
#[repr(usize)]
enum T {
    Person,
    Obs,
    Visit,
    Cond,
    Drug,
    Proc,
    Meas,
    Death,
    DpcPerson,
    DpcVisit,
    DpcCond,
    DpcProc,
    KPerson,
    KCert,
    KService,
    Link,
}

/// Chronic conditions: (ICD-10 code, prevalence by age, treatments by ATC code).
const CHRONIC: &[(&str, fn(f64) -> f64, &[&str])] = &[
    (
        "I10",
        |a| (0.012 * (a - 30.0)).clamp(0.0, 0.6),
        &["C08CA01", "C09CA06"],
    ),
    (
        "E11.9",
        |a| (0.005 * (a - 30.0)).clamp(0.0, 0.2),
        &["A10BA02", "A10BH01"],
    ),
    (
        "E78.5",
        |a| (0.007 * (a - 25.0)).clamp(0.0, 0.35),
        &["C10AA05", "C10AA07"],
    ),
    (
        "K21.9",
        |a| if a >= 20.0 { 0.08 } else { 0.0 },
        &["A02BC01", "A02BC03"],
    ),
    (
        "F32.9",
        |a| if a >= 15.0 { 0.05 } else { 0.0 },
        &["N06AB06"],
    ),
    ("J45.9", |_| 0.06, &["R03AC02"]),
];

/// NSAIDs and their weights among NSAID prescriptions.
const NSAIDS: &[&str] = &["M01AE01", "M01AB05", "M01AH01"];
/// Baseline yearly rate of gastrointestinal haemorrhage.
pub const GI_BLEED_RATE: f64 = 0.02;
/// Planted rate ratio of GI haemorrhage in the 30 days after starting an NSAID.
pub const NSAID_GI_BLEED_RR: f64 = 3.0;

/// Everything one worker builds for a chunk of persons.
pub struct Chunk {
    pub tables: Vec<RowBuf>,
    /// The implausible records written, counted as they are planted.
    pub planted: crate::planted::Planted,
}

impl Chunk {
    /// Empty buffers for every table.
    pub fn new() -> Chunk {
        Chunk {
            tables: TABLES
                .iter()
                .map(|(_, _, cols)| RowBuf::new(crate::writer::schema(cols)))
                .collect(),
            planted: Default::default(),
        }
    }

    fn t(&mut self, t: T) -> &mut RowBuf {
        &mut self.tables[t as usize]
    }
}

impl Default for Chunk {
    fn default() -> Self {
        Self::new()
    }
}

/// A 64-hex pseudonym: deterministic in (seed, purpose, person, n).
fn pseudonym(seed: u64, purpose: &str, person: u64, n: u32) -> String {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(purpose.as_bytes());
    h.update(person.to_le_bytes());
    h.update(n.to_le_bytes());
    hex::encode(h.finalize())
}

/// The prefecture of a person's insurer (JIS X 0401 code), drawn in
/// proportion to Japan's population from a hash, so that no other draw of
/// the simulation changes.
fn prefecture(seed: u64, person: u64) -> i64 {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(b"prefecture");
    h.update(person.to_le_bytes());
    let d = h.finalize();
    let x = u64::from_le_bytes(d[..8].try_into().unwrap_or_default());
    let total = u64::from(tsunagu_catalog::prefectures::total());
    i64::from(tsunagu_catalog::prefectures::at((x % total) as u32))
}

/// Days since 1970-01-01 of a calendar date.
pub fn ymd(y: i32, m: u32, d: u32) -> i32 {
    let date = chrono::NaiveDate::from_ymd_opt(y, m, d).expect("valid date");
    (date - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days() as i32
}

fn date_of(days: i32) -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")
        + chrono::TimeDelta::days(days as i64)
}

/// The calendar year of a date given as days since 1970-01-01.
pub fn year_of(days: i32) -> i32 {
    use chrono::Datelike;
    date_of(days).year()
}

fn first_of_month(days: i32) -> i32 {
    use chrono::Datelike;
    let d = date_of(days);
    ymd(d.year(), d.month(), 1)
}

/// Times of a Poisson process of yearly `rate` over [from, to).
fn poisson_times(r: &mut ChaCha8Rng, rate: f64, from: i32, to: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if rate <= 0.0 || to <= from {
        return out;
    }
    let per_day = rate / 365.25;
    let mut t = from as f64;
    loop {
        let u: f64 = r.random::<f64>().max(1e-12);
        t += -u.ln() / per_day;
        if t >= to as f64 {
            return out;
        }
        out.push(t as i32);
    }
}

fn pick<'a, T>(r: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[r.random_range(0..items.len())]
}

/// The simulation of one person.
struct Life<'a> {
    r: ChaCha8Rng,
    v: &'a Vocabulary,
    seed: u64,
    i: u64,
    birth: i32,
    male: bool,
    /// NDB keys with the span each covers.
    keys: Vec<(String, i32, i32)>,
    obs_end: i32,
    ids: [i64; 16],
    dpc_key: Option<String>,
    care_from: Option<(i32, i64)>,
    last_nsaid_end: i32,
    nsaid_starts: Vec<i32>,
    /// A second random stream for the planted quality anomalies, so that
    /// they leave every other draw (and so every other record) unchanged.
    q: ChaCha8Rng,
}

impl Life<'_> {
    fn id(&mut self, t: T) -> i64 {
        let n = &mut self.ids[t as usize];
        *n += 1;
        (self.i as i64) * 100_000 + *n
    }

    fn age_at(&self, d: i32) -> f64 {
        (d - self.birth) as f64 / 365.25
    }

    fn key_at(&self, d: i32) -> &str {
        self.keys
            .iter()
            .find(|(_, s, e)| d >= *s && d <= *e)
            .or_else(|| {
                if d < self.keys[0].1 {
                    self.keys.first()
                } else {
                    self.keys.last()
                }
            })
            .map(|(k, _, _)| k.as_str())
            .expect("at least one key")
    }

    fn visit(&mut self, c: &mut Chunk, date: i32, end: i32, inpatient: bool) -> i64 {
        let id = self.id(T::Visit);
        let key = self.key_at(date).to_owned();
        let concept = if inpatient { 9201 } else { 9202 };
        c.t(T::Visit).row(&[
            V::I(id),
            V::S(&key),
            V::I(concept),
            V::D(date),
            V::D(end),
            V::I(CLAIM),
        ]);
        id
    }

    fn condition(&mut self, c: &mut Chunk, date: i32, code: &str, visit: i64) {
        let id = self.id(T::Cond);
        let key = self.key_at(date).to_owned();
        // Real deliveries carry a few unmapped diagnoses.
        let concept = if self.r.random::<f64>() < 0.002 {
            c.planted.ndb_unmapped_conditions += 1;
            0
        } else {
            self.v.icd(code)
        };
        c.t(T::Cond).row(&[
            V::I(id),
            V::S(&key),
            V::I(concept),
            V::D(date),
            V::I(CLAIM),
            V::I(visit),
            V::S(code),
        ]);
    }

    fn procedure(&mut self, c: &mut Chunk, date: i32, concept: i64, code: &str, visit: i64) {
        let id = self.id(T::Proc);
        let key = self.key_at(date).to_owned();
        c.t(T::Proc).row(&[
            V::I(id),
            V::S(&key),
            V::I(concept),
            V::D(date),
            V::I(CLAIM),
            V::I(visit),
            V::S(code),
        ]);
    }

    /// One dispensing at an outpatient visit, with the diagnosis it treats.
    fn dispense(
        &mut self,
        c: &mut Chunk,
        date: i32,
        atc: &str,
        product: i64,
        supply: i32,
        diagnosis: &str,
    ) {
        let visit = self.visit(c, date, date, false);
        self.condition(c, date, diagnosis, visit);
        let id = self.id(T::Drug);
        let key = self.key_at(date).to_owned();
        // A small dose of end dates before their start, as in real claims.
        let end = if self.r.random::<f64>() < 0.001 {
            c.planted.ndb_drug_end_before_start += 1;
            date - self.r.random_range(1..10)
        } else {
            date + supply - 1
        };
        // A rare days supply of 0 (a keying error), the dates left as they are.
        let written_supply = if self.q.random::<f64>() < crate::planted::DAYS_SUPPLY_ZERO {
            c.planted.ndb_days_supply_zero += 1;
            0
        } else {
            supply as i64
        };
        let quantity = (supply * self.r.random_range(1..=3)) as f64;
        c.t(T::Drug).row(&[
            V::I(id),
            V::S(&key),
            V::I(product),
            V::D(date),
            V::D(end),
            V::I(CLAIM),
            V::F(quantity),
            V::I(written_supply),
            V::I(visit),
            V::S(atc),
        ]);
        if NSAIDS.contains(&atc) {
            if date > self.last_nsaid_end + 180 {
                self.nsaid_starts.push(date);
            }
            self.last_nsaid_end = self.last_nsaid_end.max(date + supply - 1);
        }
    }

    /// Repeat prescriptions from `start` until discontinued or observation ends.
    fn chronic_course(&mut self, c: &mut Chunk, start: i32, atc: &str, diagnosis: &str) {
        let products = self.v.products(atc);
        let product = *pick(&mut self.r, &products);
        let mut d = start;
        while d < self.obs_end {
            let supply = *pick(&mut self.r, &[28, 28, 28, 30, 30, 56, 84, 90]);
            self.dispense(c, d, atc, product, supply, diagnosis);
            if self.r.random::<f64>() < 0.03 {
                if self.r.random::<f64>() < 0.3 {
                    d += supply + self.r.random_range(60..400);
                    continue;
                }
                break;
            }
            let gap = if self.r.random::<f64>() < 0.8 {
                self.r.random_range(-3..=7)
            } else {
                self.r.random_range(8..60)
            };
            d += supply + gap;
        }
    }

    /// A short course (pain, oedema): 1–3 dispensings of 7–28 days.
    fn short_course(
        &mut self,
        c: &mut Chunk,
        start: i32,
        atc: &str,
        diagnosis: &str,
        supplies: &[i32],
    ) {
        let products = self.v.products(atc);
        let product = *pick(&mut self.r, &products);
        let n = self.r.random_range(1..=3);
        let mut d = start;
        for _ in 0..n {
            if d >= self.obs_end {
                break;
            }
            let supply = *pick(&mut self.r, supplies);
            self.dispense(c, d, atc, product, supply, diagnosis);
            d += supply + self.r.random_range(0..4);
        }
    }

    /// An inpatient stay in claims and in the case-mix database.
    fn admission(
        &mut self,
        c: &mut Chunk,
        date: i32,
        days: i32,
        code: &str,
        dpc_code: &str,
        procedure: Option<(i64, &str)>,
    ) -> i32 {
        let end = (date + days).min(self.obs_end);
        let visit = self.visit(c, date, end, true);
        self.condition(c, date, code, visit);
        if let Some((p, pc)) = procedure {
            self.procedure(c, date + 1, p, pc, visit);
        }
        if self.dpc_key.is_none() {
            self.dpc_key = Some(pseudonym(self.seed, "dpc", self.i, 0));
        }
        let key = self.dpc_key.clone().expect("set above");
        let vid = self.id(T::DpcVisit);
        c.t(T::DpcVisit).row(&[
            V::I(vid),
            V::S(&key),
            V::I(9201),
            V::D(date),
            V::D(end),
            V::I(32817),
            V::S(dpc_code),
        ]);
        let cid = self.id(T::DpcCond);
        let concept = self.v.icd(code);
        c.t(T::DpcCond).row(&[
            V::I(cid),
            V::S(&key),
            V::I(concept),
            V::D(date),
            V::I(32817),
            V::I(vid),
            V::S(code),
            V::S("main"),
        ]);
        if let Some((p, pc)) = procedure {
            let pid = self.id(T::DpcProc);
            c.t(T::DpcProc).row(&[
                V::I(pid),
                V::S(&key),
                V::I(p),
                V::D(date + 1),
                V::I(32817),
                V::I(vid),
                V::S(pc),
            ]);
        }
        end
    }

    /// A long-term-care certification, kept as the first one if several are triggered.
    fn certify(&mut self, date: i32, level: i64) {
        if date >= self.obs_end || self.age_at(date) < 40.0 {
            return;
        }
        match self.care_from {
            Some((d, _)) if d <= date => {}
            _ => self.care_from = Some((date, level)),
        }
    }
}

/// Simulates person `i` into the chunk's tables.
pub fn simulate(c: &mut Chunk, v: &Vocabulary, seed: u64, i: u64) {
    let mut r = ChaCha8Rng::seed_from_u64(
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.wrapping_mul(0xD1B5_4A32_D192_ED03),
    );
    let male = r.random::<f64>() < 0.48;
    let age0: f64 = {
        let u: f64 = r.random();
        let (lo, hi) = match u {
            u if u < 0.16 => (0.0, 20.0),
            u if u < 0.38 => (20.0, 40.0),
            u if u < 0.71 => (40.0, 65.0),
            u if u < 0.85 => (65.0, 75.0),
            u if u < 0.98 => (75.0, 90.0),
            _ => (90.0, 100.0),
        };
        r.random_range(lo..hi)
    };
    let birth = START - (age0 * 365.25) as i32;
    let obs_start = if r.random::<f64>() < 0.85 {
        birth.max(START - r.random_range(0..1826))
    } else {
        birth.max(r.random_range(START..END - 180))
    };
    let mut life = Life {
        r,
        v,
        seed,
        i,
        birth,
        male,
        keys: Vec::new(),
        obs_end: END,
        ids: [0; 16],
        dpc_key: None,
        care_from: None,
        last_nsaid_end: i32::MIN / 2,
        nsaid_starts: Vec::new(),
        q: ChaCha8Rng::seed_from_u64(
            seed.wrapping_mul(0xA076_1D64_78BD_642F) ^ i.wrapping_mul(0xE703_7ED1_A0B4_28DB),
        ),
    };
    // Death: Gompertz mortality, year by year.
    let mut death = None;
    let mut y = obs_start;
    while y < END {
        let q = 0.0003 * (0.09 * (life.age_at(y) - 40.0)).exp();
        if life.r.random::<f64>() < q.min(0.5) {
            death = Some((y + life.r.random_range(0..365)).min(END));
            break;
        }
        y += 365;
    }
    if let Some(d) = death {
        life.obs_end = d;
    } else if life.r.random::<f64>() < 0.05 && END - obs_start > 200 {
        life.obs_end = life.r.random_range(obs_start + 180..END);
    }
    let obs_end = life.obs_end;
    // Insurance: one key, or two when the insurer changed.
    let k0 = pseudonym(seed, "ndb", i, 0);
    if life.r.random::<f64>() < 0.03 && obs_end - obs_start > 730 {
        let change = life.r.random_range(obs_start + 180..obs_end - 180);
        life.keys.push((k0, obs_start, change - 1));
        life.keys
            .push((pseudonym(seed, "ndb", i, 1), change, obs_end));
    } else {
        life.keys.push((k0, obs_start, obs_end));
    }
    let yob = chrono_year(birth);
    let gender = if male { 8507 } else { 8532 };
    let prefecture = prefecture(seed, i);
    let keys = life.keys.clone();
    for (k, s, e) in &keys {
        let (m, d) = month_day(birth);
        c.t(T::Person).row(&[
            V::S(k),
            V::I(gender),
            V::I(yob as i64),
            V::I(m),
            V::I(d),
            V::S(if male { "1" } else { "2" }),
            V::I(prefecture),
        ]);
        let id = life.id(T::Obs);
        c.t(T::Obs)
            .row(&[V::I(id), V::S(k), V::D(*s), V::D(*e), V::I(CLAIM)]);
        // A rare period delivered again from a later date: it overlaps the first.
        if life.q.random::<f64>() < crate::planted::OVERLAPPING_PERIOD {
            c.planted.ndb_overlapping_periods += 1;
            let id = life.id(T::Obs);
            let again = *s + ((*e - *s) / 2).min(30);
            c.t(T::Obs)
                .row(&[V::I(id), V::S(k), V::D(again), V::D(*e), V::I(CLAIM)]);
        }
    }
    if let Some(d) = death {
        let key = life.key_at(d).to_owned();
        c.t(T::Death).row(&[V::S(&key), V::D(d), V::I(CLAIM)]);
    }
    let age_end = life.age_at(obs_end);
    // Chronic conditions and their repeat prescriptions.
    let mut amlodipine_start = None;
    for (code, prevalence, drugs) in CHRONIC {
        if life.r.random::<f64>() >= prevalence(age_end) {
            continue;
        }
        let onset = life.r.random_range(obs_start - 1825..obs_end);
        let start = onset.max(obs_start) + life.r.random_range(0..60);
        if start >= obs_end || life.r.random::<f64>() >= 0.85 {
            continue;
        }
        let atc = *pick(&mut life.r, drugs);
        if atc == "C08CA01" {
            amlodipine_start = Some(start);
        }
        life.chronic_course(c, start, atc, code);
    }
    // Prescribing cascade: amlodipine oedema treated with furosemide.
    if let Some(a) = amlodipine_start {
        if life.r.random::<f64>() < 0.15 {
            let d = a + life.r.random_range(7..90);
            life.short_course(c, d, "C03CA01", "R60.0", &[14, 28]);
        }
    }
    if life.r.random::<f64>() < 0.02 {
        let d = life.r.random_range(obs_start..obs_end.max(obs_start + 1));
        life.short_course(c, d, "C03CA01", "R60.0", &[14, 28]);
    }
    // Pain: NSAIDs or acetaminophen in short courses.
    let oa = life.r.random::<f64>() < (0.006 * (age_end - 45.0)).clamp(0.0, 0.3);
    let pain_rate = if oa {
        0.8
    } else {
        0.12 + 0.002 * age_end.max(0.0)
    };
    for d in poisson_times(&mut life.r, pain_rate, obs_start, obs_end) {
        let diagnosis = if oa { "M17.9" } else { "M54.5" };
        let atc = if life.r.random::<f64>() < 0.6 {
            *pick(&mut life.r, NSAIDS)
        } else {
            "N02BE01"
        };
        life.short_course(c, d, atc, diagnosis, &[7, 14, 14, 28]);
    }
    // GI haemorrhage: baseline, tripled in the 30 days after starting an NSAID.
    let mut bleeds = poisson_times(&mut life.r, GI_BLEED_RATE, obs_start, obs_end);
    for s in life.nsaid_starts.clone() {
        let excess = GI_BLEED_RATE * (NSAID_GI_BLEED_RR - 1.0);
        bleeds.extend(poisson_times(&mut life.r, excess, s, (s + 30).min(obs_end)));
    }
    bleeds.sort_unstable();
    for d in bleeds {
        if life.r.random::<f64>() < 0.4 {
            let days = life.r.random_range(3..14);
            life.admission(
                c,
                d,
                days,
                "K92.2",
                "060190xx99x0xx",
                Some((4_000_001, "K653")),
            );
        } else {
            let visit = life.visit(c, d, d, false);
            life.condition(c, d, "K92.2", visit);
            life.procedure(c, d, 4_000_001, "K653", visit);
        }
    }
    // Acute admissions.
    let mid = life.age_at((obs_start + obs_end) / 2);
    let sex = if male { 1.0 } else { 1.6 };
    if mid >= 65.0 {
        let rate = 0.003 * (0.1 * (mid - 65.0)).exp() * sex;
        if let Some(&d) = poisson_times(&mut life.r, rate, obs_start, obs_end).first() {
            let days = life.r.random_range(14..45);
            let surgery = if life.r.random::<f64>() < 0.5 {
                (4_000_002, "K046")
            } else {
                (4_000_003, "K081")
            };
            let out = life.admission(c, d, days, "S72.0", "160800xx01xxxx", Some(surgery));
            if life.r.random::<f64>() < 0.6 {
                let when = out + life.r.random_range(7..365);
                let level = life.r.random_range(3..=6);
                life.certify(when, level);
            }
        }
    }
    if mid >= 40.0 {
        let rate = 0.0015 * (0.07 * (mid - 60.0)).exp();
        if let Some(&d) = poisson_times(&mut life.r, rate, obs_start, obs_end).first() {
            let days = life.r.random_range(10..60);
            let out = life.admission(
                c,
                d,
                days,
                "I63.9",
                "010060x099030x",
                Some((4_000_004, "E200")),
            );
            if life.r.random::<f64>() < 0.4 {
                let when = out + life.r.random_range(7..365);
                let level = life.r.random_range(3..=7);
                life.certify(when, level);
            }
        }
        let rate = 0.001 * (0.06 * (mid - 60.0)).exp() * if male { 2.0 } else { 1.0 };
        if let Some(&d) = poisson_times(&mut life.r, rate, obs_start, obs_end).first() {
            let days = life.r.random_range(7..21);
            life.admission(
                c,
                d,
                days,
                "I21.9",
                "050030xx97000x",
                Some((4_000_005, "K549")),
            );
        }
    }
    let pneumonia = 0.01 * if mid >= 75.0 { 3.0 } else { 1.0 };
    for d in poisson_times(&mut life.r, pneumonia, obs_start, obs_end) {
        if life.r.random::<f64>() < 0.3 {
            let days = life.r.random_range(5..20);
            life.admission(c, d, days, "J18.9", "040080x099x0xx", None);
        } else {
            let visit = life.visit(c, d, d, false);
            life.condition(c, d, "J18.9", visit);
        }
    }
    // Annual health checks, ages 40-74.
    for year in year_of(obs_start)..=year_of(obs_end) {
        let d = ymd(year, 4, 1) + life.r.random_range(0..270);
        let age = life.age_at(d);
        if d < obs_start
            || d > obs_end
            || !(40.0..75.0).contains(&age)
            || life.r.random::<f64>() >= 0.5
        {
            continue;
        }
        let hypertensive = life.ids[T::Drug as usize] > 0 && amlodipine_start.is_some();
        let values = [
            (
                5_000_001,
                5_100_001,
                "BMI",
                23.0 + 3.5 * normal(&mut life.r),
            ),
            (
                5_000_002,
                5_100_002,
                "SBP",
                125.0 + 15.0 * normal(&mut life.r) + if hypertensive { 10.0 } else { 0.0 },
            ),
            (
                5_000_003,
                5_100_003,
                "HBA1C",
                5.6 + 0.4 * normal(&mut life.r),
            ),
            (
                5_000_004,
                5_100_004,
                "LDL",
                120.0 + 30.0 * normal(&mut life.r),
            ),
        ];
        // A rare record dated in the future, as real deliveries have.
        let date = if life.r.random::<f64>() < 0.0005 {
            c.planted.ndb_future_measurements += values.len() as u64;
            ymd(2031, 1, 1)
        } else {
            d
        };
        for (concept, unit, code, value) in values {
            let id = life.id(T::Meas);
            let key = life.key_at(d).to_owned();
            let mut value = (value * 10.0).round() / 10.0;
            // A rare value keyed with a misplaced decimal point.
            if life.q.random::<f64>() < crate::planted::VALUE_TIMES_TEN {
                value *= 10.0;
            }
            if !crate::planted::plausible_measurement(concept, value) {
                c.planted.ndb_implausible_measurements += 1;
            }
            c.t(T::Meas).row(&[
                V::I(id),
                V::S(&key),
                V::I(concept),
                V::D(date),
                V::I(CLAIM),
                V::F(value),
                V::I(unit),
                V::S(code),
            ]);
        }
    }
    // A visit before enrolment: an event outside any observation period.
    if life.r.random::<f64>() < 0.005 {
        let d = obs_start - life.r.random_range(10..200);
        c.planted.ndb_visits_outside_observation += 1;
        c.planted.ndb_conditions_outside_observation += 1;
        if d < birth {
            c.planted.ndb_events_before_birth += 2;
        }
        let visit = life.visit(c, d, d, false);
        life.condition(c, d, "J18.9", visit);
    }
    // Long-term care: certification by age, or after a fracture or stroke.
    if life.care_from.is_none() && age_end >= 65.0 {
        let from = obs_start.max(birth + (65.0 * 365.25) as i32);
        let rate = 0.008 * (0.11 * (age_end.max(65.0) - 65.0)).exp();
        if let Some(&d) = poisson_times(&mut life.r, rate, from, obs_end).first() {
            let level = life.r.random_range(1..=5);
            life.certify(d, level);
        }
    }
    if let Some((from, level)) = life.care_from {
        care(&mut life, c, from, level);
    }
    // Linkage rows and case-mix persons.
    let link = pseudonym(seed, "link", i, 0);
    let linked_ndb = life.r.random::<f64>() < 0.98;
    if linked_ndb {
        for (k, _, _) in &keys {
            c.t(T::Link).row(&[V::S("ndb"), V::S(k), V::S(&link)]);
        }
    }
    if let Some(k) = life.dpc_key.clone() {
        // A few case-mix keys have no person row.
        if life.r.random::<f64>() >= 0.01 {
            // A rare birth year keyed as 1800.
            let written_yob = if life.q.random::<f64>() < crate::planted::BIRTH_YEAR_1800 {
                c.planted.dpc_birth_year_1800 += 1;
                1800
            } else {
                yob as i64
            };
            c.t(T::DpcPerson)
                .row(&[V::S(&k), V::I(gender), V::I(written_yob)]);
        } else {
            c.planted.dpc_visits_without_person += life.ids[T::DpcVisit as usize] as u64;
            c.planted.dpc_conditions_without_person += life.ids[T::DpcCond as usize] as u64;
            c.planted.dpc_procedures_without_person += life.ids[T::DpcProc as usize] as u64;
        }
        if life.r.random::<f64>() < 0.95 {
            c.t(T::Link).row(&[V::S("dpc"), V::S(&k), V::S(&link)]);
        }
    }
}

fn care(life: &mut Life<'_>, c: &mut Chunk, from: i32, first_level: i64) {
    let key = pseudonym(life.seed, "kaigo", life.i, 0);
    let gender = if life.male { 8507 } else { 8532 };
    let yob = chrono_year(life.birth) as i64;
    c.t(T::KPerson).row(&[V::S(&key), V::I(gender), V::I(yob)]);
    if life.r.random::<f64>() < 0.92 {
        let link = pseudonym(life.seed, "link", life.i, 0);
        c.t(T::Link).row(&[V::S("kaigo"), V::S(&key), V::S(&link)]);
    }
    let mut level = first_level;
    let mut start = from;
    while start < life.obs_end {
        let end = (start + 364).min(END);
        let id = life.id(T::KCert);
        let concept = 6_000_000 + level;
        let code = ["12", "13", "21", "22", "23", "24", "25"][(level - 1) as usize];
        c.t(T::KCert).row(&[
            V::I(id),
            V::S(&key),
            V::D(start - life.r.random_range(7..30)),
            V::D(start),
            V::D(end),
            V::I(concept),
            V::S(code),
        ]);
        if life.r.random::<f64>() < 0.3 && level < 7 {
            level += 1;
        }
        start += 365;
    }
    let service = match first_level {
        1 | 2 => (6_100_002, "15"),
        3 | 4 => (6_100_001, "11"),
        5 | 6 => (6_100_003, "21"),
        _ => (6_100_004, "51"),
    };
    let mut month = first_of_month(from);
    while month <= life.obs_end {
        let id = life.id(T::KService);
        let units = life.r.random_range(200..3000) * first_level;
        c.t(T::KService).row(&[
            V::I(id),
            V::S(&key),
            V::D(month),
            V::I(service.0),
            V::S(service.1),
            V::I(units),
        ]);
        month = first_of_month(month + 32);
    }
}

fn normal(r: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = r.random::<f64>().max(1e-12);
    let u2: f64 = r.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn chrono_year(days: i32) -> i32 {
    year_of(days)
}

fn month_day(days: i32) -> (i64, i64) {
    use chrono::Datelike;
    let d = date_of(days);
    (d.month() as i64, d.day() as i64)
}
