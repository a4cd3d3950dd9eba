//! Japanese source vocabularies, shaped like the real masters, each code
//! mapped (`Maps to`) to the standard concepts the studies use:
//!
//! - `JP Disease`: 7-digit disease-name codes of the standard disease master
//!   (several names may map to one ICD-10 code; `0000999` is the uncoded
//!   disease name and maps to nothing);
//! - `JP Receipt Drug`: 9-digit receipt drug codes (starting with 6), one per
//!   product, with a `Has YJ code` relationship to
//! - `JP YJ`: 12-character YJ codes (4-digit efficacy class, 3-digit
//!   ingredient, dosage-form letter, 3-digit product, check digit);
//! - `JP Receipt Procedure`: 9-digit fee-schedule procedure codes;
//! - `DPC`: 14-character diagnosis groups, related (`DPC main diagnosis`) to
//!   the ICD-10 code of the group's main diagnosis.
//!
//! The codes are synthetic (the real masters are licensed), and so is the YJ
//! check digit (see [`yj_check_digit`]). Japanese names are written as
//! `concept_synonym` rows in Japanese (language concept 4181524), English
//! names as `concept_name`. One receipt drug code was replaced at the April
//! 2020 price revision: the old code is valid until 2020-03-31, deprecated
//! (`U`) and `Concept replaced by` the new one; both map to the product, and
//! records are written with the code valid on their date.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{Date32Type, Int64Type};

use crate::vocab::{DRUGS, Vocabulary};

/// Language concept of Japanese synonyms.
pub const JAPANESE: i64 = 4_181_524;

/// Disease-name code of an uncoded disease name (maps to nothing).
pub const UNCODED_DISEASE: &str = "0000999";

/// Disease names: (ICD-10 code, disease-name code, Japanese name, English name).
const DISEASE_NAMES: &[(&str, &str, &str, &str)] = &[
    ("E11", "8840001", "2型糖尿病", "Type 2 diabetes mellitus"),
    (
        "E11.9",
        "8840002",
        "2型糖尿病・合併症なし",
        "Type 2 diabetes mellitus without complication",
    ),
    ("E78", "8840011", "脂質異常症", "Dyslipidaemia"),
    ("E78.5", "8840012", "高脂血症", "Hyperlipidaemia"),
    ("F32", "8840021", "うつ病", "Depression"),
    ("F32.9", "8840022", "うつ病エピソード", "Depressive episode"),
    ("I10", "8840031", "本態性高血圧症", "Essential hypertension"),
    ("I10", "8840032", "高血圧症", "Hypertension"),
    (
        "I21",
        "8840041",
        "急性心筋梗塞",
        "Acute myocardial infarction",
    ),
    (
        "I21.9",
        "8840042",
        "急性心筋梗塞・詳細不明",
        "Acute myocardial infarction, unspecified",
    ),
    ("I63", "8840051", "脳梗塞", "Cerebral infarction"),
    (
        "I63.9",
        "8840052",
        "脳梗塞・詳細不明",
        "Cerebral infarction, unspecified",
    ),
    ("J18", "8840061", "肺炎", "Pneumonia"),
    (
        "J18.9",
        "8840062",
        "肺炎・詳細不明",
        "Pneumonia, unspecified",
    ),
    ("J45", "8840071", "気管支喘息", "Bronchial asthma"),
    (
        "J45.9",
        "8840072",
        "気管支喘息・詳細不明",
        "Bronchial asthma, unspecified",
    ),
    (
        "K21",
        "8840081",
        "胃食道逆流症",
        "Gastro-oesophageal reflux disease",
    ),
    (
        "K21.9",
        "8840082",
        "非びらん性胃食道逆流症",
        "Non-erosive reflux disease",
    ),
    (
        "K92",
        "8840091",
        "消化器疾患",
        "Disease of digestive system",
    ),
    (
        "K92.2",
        "8840092",
        "消化管出血",
        "Gastrointestinal haemorrhage",
    ),
    ("M17", "8840101", "変形性膝関節症", "Gonarthrosis"),
    (
        "M17.9",
        "8840102",
        "変形性膝関節症・詳細不明",
        "Gonarthrosis, unspecified",
    ),
    ("M54", "8840111", "背部痛", "Dorsalgia"),
    ("M54.5", "8840112", "腰痛症", "Lumbago"),
    ("M54.5", "8840113", "急性腰痛症", "Acute lumbago"),
    ("R60", "8840121", "浮腫", "Oedema"),
    ("R60.0", "8840122", "限局性浮腫", "Localized oedema"),
    ("R60.0", "8840123", "下腿浮腫", "Oedema of lower leg"),
    ("S72", "8840131", "大腿骨骨折", "Fracture of femur"),
    (
        "S72.0",
        "8840132",
        "大腿骨頚部骨折",
        "Fracture of neck of femur",
    ),
];

/// Ingredients: (ATC code, efficacy class of the YJ code, Japanese name).
const INGREDIENTS_JA: &[(&str, &str, &str)] = &[
    ("A02BC01", "2329", "オメプラゾール"),
    ("A02BC03", "2329", "ランソプラゾール"),
    ("A10BA02", "3962", "メトホルミン塩酸塩"),
    ("A10BH01", "3969", "シタグリプチン"),
    ("C03CA01", "2139", "フロセミド"),
    ("C08CA01", "2171", "アムロジピン"),
    ("C09CA06", "2149", "カンデサルタン シレキセチル"),
    ("C10AA05", "2189", "アトルバスタチン"),
    ("C10AA07", "2189", "ロスバスタチン"),
    ("M01AB05", "1147", "ジクロフェナクナトリウム"),
    ("M01AE01", "1149", "イブプロフェン"),
    ("M01AH01", "1149", "セレコキシブ"),
    ("N02BE01", "1141", "アセトアミノフェン"),
    ("N06AB06", "1179", "セルトラリン"),
    ("R03AC02", "2254", "サルブタモール"),
];

/// Fee-schedule procedures: (JP Procedure code, receipt code, Japanese name).
const PROCEDURES: &[(&str, &str, &str)] = &[
    ("K653", "150285010", "内視鏡的消化管止血術"),
    ("K046", "150050310", "骨折観血的手術（大腿）"),
    ("K081", "150065910", "人工骨頭挿入術（股）"),
    ("E200", "170012010", "ＣＴ撮影（頭部）"),
    ("K549", "150204410", "経皮的冠動脈ステント留置術"),
    ("V001", "160900110", "インフルエンザ予防接種"),
];

/// DPC diagnosis groups: (code, ICD-10 of the main diagnosis, Japanese, English).
const DPC_GROUPS: &[(&str, &str, &str, &str)] = &[
    (
        "160800xx01xxxx",
        "S72.0",
        "股関節・大腿近位の骨折　人工骨頭挿入術等",
        "Fracture of hip and proximal femur, with arthroplasty or osteosynthesis",
    ),
    (
        "040080x099x0xx",
        "J18.9",
        "肺炎等　手術なし",
        "Pneumonia, without surgery",
    ),
    (
        "010060x099030x",
        "I63.9",
        "脳梗塞　手術なし",
        "Cerebral infarction, without surgery",
    ),
    (
        "050030xx97000x",
        "I21.9",
        "急性心筋梗塞　その他の手術あり",
        "Acute myocardial infarction, with other surgery",
    ),
];

/// The code revision: the first product of this ingredient got a new
/// receipt code from this date on.
const REVISED_ATC: &str = "C08CA01";
/// 2020-04-01, days since the epoch.
pub const REVISION_DATE: i32 = 18_353;

/// Codes the claims are written in, by what the generator knows.
#[derive(Debug, Default, Clone)]
pub struct ReceiptCodes {
    /// ICD-10 code -> disease-name codes.
    pub diseases: BTreeMap<String, Vec<String>>,
    /// Product concept id -> (receipt code before the revision date, from it on).
    pub drugs: BTreeMap<i64, (String, String)>,
    /// JP Procedure code -> receipt procedure code.
    pub procedures: BTreeMap<String, String>,
}

impl ReceiptCodes {
    /// The disease-name code written for an ICD-10 code on record `id`
    /// (names of one code alternate by record); the uncoded name when unknown.
    pub fn disease(&self, icd: &str, id: i64) -> &str {
        match self.diseases.get(icd) {
            Some(codes) if !codes.is_empty() => &codes[id.rem_euclid(codes.len() as i64) as usize],
            _ => UNCODED_DISEASE,
        }
    }

    /// The receipt code of a product dispensed on `date`.
    pub fn drug(&self, product: i64, date: i32) -> Option<&str> {
        self.drugs.get(&product).map(|(old, new)| {
            if date < REVISION_DATE {
                old.as_str()
            } else {
                new.as_str()
            }
        })
    }
}

/// The reverse of a relationship this module writes.
pub fn reverse(relationship: &str) -> &'static str {
    match relationship {
        "Maps to" => "Mapped from",
        "Has YJ code" => "YJ code of",
        "Concept replaced by" => "Concept replaces",
        "DPC main diagnosis" => "Main diagnosis of DPC",
        _ => "Related to",
    }
}

/// The YJ check digit used here (synthetic): the weighted sum of the first
/// 11 characters (digits as themselves, letters A=10 ... Z=35, weights 2, 3,
/// 4, ... 12), modulo 10.
pub fn yj_check_digit(first11: &str) -> char {
    let sum: u32 = first11
        .chars()
        .enumerate()
        .map(|(i, c)| c.to_digit(36).unwrap_or(0) * (i as u32 + 2))
        .sum();
    char::from_digit(sum % 10, 10).unwrap_or('0')
}

/// Adds the source vocabularies to `v`, with their mappings; returns the
/// codes the claims are written in.
pub fn add(v: &mut Vocabulary) -> ReceiptCodes {
    let mut codes = ReceiptCodes::default();
    let mut next = 7_000_001;
    let uncoded = v.add_source(
        next,
        "Uncoded disease name",
        "Condition",
        "JP Disease",
        "Disease name",
        UNCODED_DISEASE,
    );
    v.synonyms.push((uncoded, "未コード化傷病名".into()));
    next += 1;
    for (icd, code, ja, en) in DISEASE_NAMES {
        let id = v.add_source(next, en, "Condition", "JP Disease", "Disease name", code);
        next += 1;
        v.synonyms.push((id, (*ja).into()));
        v.relationships.push((id, v.icd(icd), "Maps to"));
        codes
            .diseases
            .entry(icd.to_string())
            .or_default()
            .push(code.to_string());
    }
    let mut next = 7_100_001;
    let mut receipt_serial = 0;
    for (n, (atc, ingredient, products)) in DRUGS.iter().enumerate() {
        let (class, ja) = INGREDIENTS_JA
            .iter()
            .find(|(a, ..)| a == atc)
            .map(|(_, c, j)| (*c, *j))
            .unwrap_or(("9999", *ingredient));
        v.synonyms.push((v.ingredient(atc), ja.into()));
        for (k, product) in products.iter().enumerate() {
            let product_id = v.products(atc)[k];
            let strength = product
                .split_whitespace()
                .zip(product.split_whitespace().skip(1))
                .find(|(_, unit)| unit.starts_with("MG"))
                .map(|(n, _)| format!("{n}mg"))
                .unwrap_or_default();
            let form = if product.contains("Inhaler") {
                'G'
            } else {
                'F'
            };
            let stem = format!("{class}{:03}{form}{:03}", n + 1, k + 1);
            let yj = format!("{stem}{}", yj_check_digit(&stem));
            let ja_product = if form == 'G' {
                format!("{ja}吸入エアゾール")
            } else {
                format!("{ja}錠{strength}")
            };
            let yj_id = v.add_source(next, product, "Drug", "JP YJ", "YJ code", &yj);
            next += 1;
            v.synonyms.push((yj_id, ja_product.clone()));
            v.relationships.push((yj_id, product_id, "Maps to"));
            receipt_serial += 1;
            let receipt = format!("62{:07}", 1000 + 17 * receipt_serial);
            let id = v.add_source(
                next,
                product,
                "Drug",
                "JP Receipt Drug",
                "Receipt drug",
                &receipt,
            );
            next += 1;
            v.synonyms.push((id, ja_product.clone()));
            v.relationships.push((id, product_id, "Maps to"));
            v.relationships.push((id, yj_id, "Has YJ code"));
            let mut written = (receipt.clone(), receipt.clone());
            if *atc == REVISED_ATC && k == 0 {
                receipt_serial += 1;
                let revised = format!("62{:07}", 1000 + 17 * receipt_serial);
                let new_id = v.add_source(
                    next,
                    product,
                    "Drug",
                    "JP Receipt Drug",
                    "Receipt drug",
                    &revised,
                );
                next += 1;
                v.synonyms.push((new_id, ja_product));
                v.relationships.push((new_id, product_id, "Maps to"));
                v.relationships.push((new_id, yj_id, "Has YJ code"));
                v.relationships.push((id, new_id, "Concept replaced by"));
                v.set_validity(id, None, Some(REVISION_DATE - 1), Some("U"));
                v.set_validity(new_id, Some(REVISION_DATE), None, None);
                written.1 = revised;
            }
            codes.drugs.insert(product_id, written);
        }
    }
    let mut next = 7_200_001;
    for (jp, receipt, ja) in PROCEDURES {
        let Some(target) = v.code("JP Procedure", jp) else {
            continue;
        };
        let name = v
            .concepts
            .iter()
            .find(|c| c.id == target)
            .map(|c| c.name.clone())
            .unwrap_or_default();
        let id = v.add_source(
            next,
            &name,
            "Procedure",
            "JP Receipt Procedure",
            "Receipt procedure",
            receipt,
        );
        next += 1;
        v.synonyms.push((id, (*ja).into()));
        v.relationships.push((id, target, "Maps to"));
        codes.procedures.insert(jp.to_string(), receipt.to_string());
    }
    let mut next = 7_300_001;
    for (code, icd, ja, en) in DPC_GROUPS {
        let id = v.add_source(next, en, "Condition", "DPC", "Diagnosis group", code);
        next += 1;
        v.synonyms.push((id, (*ja).into()));
        v.relationships.push((id, v.icd(icd), "DPC main diagnosis"));
    }
    codes
}

/// A claims batch as delivered in receipt codes: the standard concept
/// column written as 0 and the source value holding the source code
/// (`ndb` conditions, dispensings and procedures; other tables unchanged).
pub fn receipt_batch(table: &str, batch: RecordBatch, codes: &ReceiptCodes) -> RecordBatch {
    let (concept, value) = match table {
        "condition_occurrence" => ("condition_concept_id", "condition_source_value"),
        "drug_exposure" => ("drug_concept_id", "drug_source_value"),
        "procedure_occurrence" => ("procedure_concept_id", "procedure_source_value"),
        _ => return batch,
    };
    let schema = batch.schema();
    let column = |n: &str| schema.index_of(n).ok().map(|i| batch.column(i).clone());
    let (Some(concepts), Some(values), Some(ids)) = (
        column(concept),
        column(value),
        Some(batch.column(0).clone()),
    ) else {
        return batch;
    };
    let concepts = concepts.as_primitive::<Int64Type>();
    let values = values.as_string::<i32>();
    let ids = ids.as_primitive::<Int64Type>();
    let dates = column("drug_exposure_start_date");
    let dates = dates.as_ref().map(|d| d.as_primitive::<Date32Type>());
    let mut written_concepts = Vec::with_capacity(batch.num_rows());
    let mut written_values = Vec::with_capacity(batch.num_rows());
    for r in 0..batch.num_rows() {
        let (c, v) = (concepts.value(r), values.value(r));
        let code: Option<String> = match table {
            "condition_occurrence" if c == 0 => Some(UNCODED_DISEASE.into()),
            "condition_occurrence" => Some(codes.disease(v, ids.value(r)).into()),
            "drug_exposure" => dates
                .and_then(|d| codes.drug(c, d.value(r)))
                .map(str::to_owned),
            _ => codes.procedures.get(v).cloned(),
        };
        match code {
            Some(code) => {
                written_concepts.push(0);
                written_values.push(code);
            }
            None => {
                written_concepts.push(c);
                written_values.push(v.to_owned());
            }
        }
    }
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, col)| -> ArrayRef {
            if f.name() == concept {
                Arc::new(Int64Array::from(written_concepts.clone()))
            } else if f.name() == value {
                Arc::new(StringArray::from_iter_values(written_values.iter()))
            } else {
                col.clone()
            }
        })
        .collect();
    RecordBatch::try_new(schema.clone(), columns).expect("same schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_shapes_of_the_real_ones() {
        let v = Vocabulary::build();
        let by = |vocabulary: &str| {
            v.concepts
                .iter()
                .filter(|c| c.vocabulary == vocabulary)
                .map(|c| c.code.clone())
                .collect::<Vec<_>>()
        };
        let digits = |s: &str, n: usize| s.len() == n && s.chars().all(|c| c.is_ascii_digit());
        assert!(by("JP Disease").iter().all(|c| digits(c, 7)));
        assert!(
            by("JP Receipt Drug")
                .iter()
                .all(|c| digits(c, 9) && c.starts_with('6'))
        );
        assert!(by("JP Receipt Procedure").iter().all(|c| digits(c, 9)));
        assert!(by("DPC").iter().all(|c| c.len() == 14));
        for yj in by("JP YJ") {
            assert_eq!(yj.len(), 12, "{yj}");
            assert!(yj[7..8].chars().all(|c| c.is_ascii_uppercase()), "{yj}");
            assert_eq!(yj.chars().last(), Some(yj_check_digit(&yj[..11])), "{yj}");
        }
        // Every code but the uncoded name maps to a standard concept.
        let standard: std::collections::BTreeSet<i64> = v
            .concepts
            .iter()
            .filter(|c| c.standard == Some("S"))
            .map(|c| c.id)
            .collect();
        for c in v.concepts.iter().filter(|c| {
            [
                "JP Disease",
                "JP Receipt Drug",
                "JP YJ",
                "JP Receipt Procedure",
            ]
            .contains(&c.vocabulary)
        }) {
            let maps: Vec<i64> = v
                .relationships
                .iter()
                .filter(|r| r.0 == c.id && r.2 == "Maps to")
                .map(|r| r.1)
                .collect();
            if c.code == UNCODED_DISEASE {
                assert!(maps.is_empty());
            } else {
                assert_eq!(maps.len(), 1, "{}", c.code);
                assert!(standard.contains(&maps[0]), "{}", c.code);
            }
        }
    }
}
