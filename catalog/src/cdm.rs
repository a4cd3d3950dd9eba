//! The OMOP CDM v5.4 table definitions: column names, order and types.
//!
//! A delivered table whose name is a CDM table is shown with the CDM's
//! columns in CDM order and types; columns the file lacks are NULL.

use datafusion::arrow::datatypes::{DataType, TimeUnit};

/// The logical type of a CDM column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CdmType {
    Integer,
    Float,
    Date,
    Datetime,
    Text,
}

impl CdmType {
    /// The Arrow type the engine shows for this CDM type.
    pub fn arrow(self) -> DataType {
        match self {
            CdmType::Integer => DataType::Int64,
            CdmType::Float => DataType::Float64,
            CdmType::Date => DataType::Date32,
            CdmType::Datetime => DataType::Timestamp(TimeUnit::Microsecond, None),
            CdmType::Text => DataType::Utf8,
        }
    }

    /// The SQL name, for messages.
    pub fn sql_name(self) -> &'static str {
        match self {
            CdmType::Integer => "BIGINT",
            CdmType::Float => "DOUBLE",
            CdmType::Date => "DATE",
            CdmType::Datetime => "TIMESTAMP",
            CdmType::Text => "TEXT",
        }
    }
}

/// Column types: i integer, f float, d date, t datetime, s text.
const SPEC: &str = "
person: person_id i, gender_concept_id i, year_of_birth i, month_of_birth i, day_of_birth i, birth_datetime t, race_concept_id i, ethnicity_concept_id i, location_id i, provider_id i, care_site_id i, person_source_value s, gender_source_value s, gender_source_concept_id i, race_source_value s, race_source_concept_id i, ethnicity_source_value s, ethnicity_source_concept_id i
observation_period: observation_period_id i, person_id i, observation_period_start_date d, observation_period_end_date d, period_type_concept_id i
visit_occurrence: visit_occurrence_id i, person_id i, visit_concept_id i, visit_start_date d, visit_start_datetime t, visit_end_date d, visit_end_datetime t, visit_type_concept_id i, provider_id i, care_site_id i, visit_source_value s, visit_source_concept_id i, admitted_from_concept_id i, admitted_from_source_value s, discharged_to_concept_id i, discharged_to_source_value s, preceding_visit_occurrence_id i
visit_detail: visit_detail_id i, person_id i, visit_detail_concept_id i, visit_detail_start_date d, visit_detail_start_datetime t, visit_detail_end_date d, visit_detail_end_datetime t, visit_detail_type_concept_id i, provider_id i, care_site_id i, visit_detail_source_value s, visit_detail_source_concept_id i, admitted_from_concept_id i, admitted_from_source_value s, discharged_to_source_value s, discharged_to_concept_id i, preceding_visit_detail_id i, parent_visit_detail_id i, visit_occurrence_id i
condition_occurrence: condition_occurrence_id i, person_id i, condition_concept_id i, condition_start_date d, condition_start_datetime t, condition_end_date d, condition_end_datetime t, condition_type_concept_id i, condition_status_concept_id i, stop_reason s, provider_id i, visit_occurrence_id i, visit_detail_id i, condition_source_value s, condition_source_concept_id i, condition_status_source_value s
drug_exposure: drug_exposure_id i, person_id i, drug_concept_id i, drug_exposure_start_date d, drug_exposure_start_datetime t, drug_exposure_end_date d, drug_exposure_end_datetime t, verbatim_end_date d, drug_type_concept_id i, stop_reason s, refills i, quantity f, days_supply i, sig s, route_concept_id i, lot_number s, provider_id i, visit_occurrence_id i, visit_detail_id i, drug_source_value s, drug_source_concept_id i, route_source_value s, dose_unit_source_value s
procedure_occurrence: procedure_occurrence_id i, person_id i, procedure_concept_id i, procedure_date d, procedure_datetime t, procedure_end_date d, procedure_end_datetime t, procedure_type_concept_id i, modifier_concept_id i, quantity i, provider_id i, visit_occurrence_id i, visit_detail_id i, procedure_source_value s, procedure_source_concept_id i, modifier_source_value s
device_exposure: device_exposure_id i, person_id i, device_concept_id i, device_exposure_start_date d, device_exposure_start_datetime t, device_exposure_end_date d, device_exposure_end_datetime t, device_type_concept_id i, unique_device_id s, production_id s, quantity i, provider_id i, visit_occurrence_id i, visit_detail_id i, device_source_value s, device_source_concept_id i, unit_concept_id i, unit_source_value s, unit_source_concept_id i
measurement: measurement_id i, person_id i, measurement_concept_id i, measurement_date d, measurement_datetime t, measurement_time s, measurement_type_concept_id i, operator_concept_id i, value_as_number f, value_as_concept_id i, unit_concept_id i, range_low f, range_high f, provider_id i, visit_occurrence_id i, visit_detail_id i, measurement_source_value s, measurement_source_concept_id i, unit_source_value s, unit_source_concept_id i, value_source_value s, measurement_event_id i, meas_event_field_concept_id i
observation: observation_id i, person_id i, observation_concept_id i, observation_date d, observation_datetime t, observation_type_concept_id i, value_as_number f, value_as_string s, value_as_concept_id i, qualifier_concept_id i, unit_concept_id i, provider_id i, visit_occurrence_id i, visit_detail_id i, observation_source_value s, observation_source_concept_id i, unit_source_value s, qualifier_source_value s, value_source_value s, observation_event_id i, obs_event_field_concept_id i
death: person_id i, death_date d, death_datetime t, death_type_concept_id i, cause_concept_id i, cause_source_value s, cause_source_concept_id i
note: note_id i, person_id i, note_date d, note_datetime t, note_type_concept_id i, note_class_concept_id i, note_title s, note_text s, encoding_concept_id i, language_concept_id i, provider_id i, visit_occurrence_id i, visit_detail_id i, note_source_value s, note_event_id i, note_event_field_concept_id i
specimen: specimen_id i, person_id i, specimen_concept_id i, specimen_type_concept_id i, specimen_date d, specimen_datetime t, quantity f, unit_concept_id i, anatomic_site_concept_id i, disease_status_concept_id i, specimen_source_id s, specimen_source_value s, unit_source_value s, anatomic_site_source_value s, disease_status_source_value s
payer_plan_period: payer_plan_period_id i, person_id i, payer_plan_period_start_date d, payer_plan_period_end_date d, payer_concept_id i, payer_source_value s, payer_source_concept_id i, plan_concept_id i, plan_source_value s, plan_source_concept_id i, sponsor_concept_id i, sponsor_source_value s, sponsor_source_concept_id i, family_source_value s, stop_reason_concept_id i, stop_reason_source_value s, stop_reason_source_concept_id i
drug_era: drug_era_id i, person_id i, drug_concept_id i, drug_era_start_date d, drug_era_end_date d, drug_exposure_count i, gap_days i
dose_era: dose_era_id i, person_id i, drug_concept_id i, unit_concept_id i, dose_value f, dose_era_start_date d, dose_era_end_date d
condition_era: condition_era_id i, person_id i, condition_concept_id i, condition_era_start_date d, condition_era_end_date d, condition_occurrence_count i
episode: episode_id i, person_id i, episode_concept_id i, episode_start_date d, episode_start_datetime t, episode_end_date d, episode_end_datetime t, episode_parent_id i, episode_number i, episode_object_concept_id i, episode_type_concept_id i, episode_source_value s, episode_source_concept_id i
location: location_id i, address_1 s, address_2 s, city s, state s, zip s, county s, location_source_value s, country_concept_id i, country_source_value s, latitude f, longitude f
care_site: care_site_id i, care_site_name s, place_of_service_concept_id i, location_id i, care_site_source_value s, place_of_service_source_value s
provider: provider_id i, provider_name s, npi s, dea s, specialty_concept_id i, care_site_id i, year_of_birth i, gender_concept_id i, provider_source_value s, specialty_source_value s, specialty_source_concept_id i, gender_source_value s, gender_source_concept_id i
cdm_source: cdm_source_name s, cdm_source_abbreviation s, cdm_holder s, source_description s, source_documentation_reference s, cdm_etl_reference s, source_release_date d, cdm_release_date d, cdm_version s, cdm_version_concept_id i, vocabulary_version s
concept: concept_id i, concept_name s, domain_id s, vocabulary_id s, concept_class_id s, standard_concept s, concept_code s, valid_start_date d, valid_end_date d, invalid_reason s
vocabulary: vocabulary_id s, vocabulary_name s, vocabulary_reference s, vocabulary_version s, vocabulary_concept_id i
domain: domain_id s, domain_name s, domain_concept_id i
concept_class: concept_class_id s, concept_class_name s, concept_class_concept_id i
concept_relationship: concept_id_1 i, concept_id_2 i, relationship_id s, valid_start_date d, valid_end_date d, invalid_reason s
relationship: relationship_id s, relationship_name s, is_hierarchical s, defines_ancestry s, reverse_relationship_id s, relationship_concept_id i
concept_synonym: concept_id i, concept_synonym_name s, language_concept_id i
concept_ancestor: ancestor_concept_id i, descendant_concept_id i, min_levels_of_separation i, max_levels_of_separation i
source_to_concept_map: source_code s, source_concept_id i, source_vocabulary_id s, source_code_description s, target_concept_id i, target_vocabulary_id s, valid_start_date d, valid_end_date d, invalid_reason s
drug_strength: drug_concept_id i, ingredient_concept_id i, amount_value f, amount_unit_concept_id i, numerator_value f, numerator_unit_concept_id i, denominator_value f, denominator_unit_concept_id i, box_size i, valid_start_date d, valid_end_date d, invalid_reason s
";

/// One CDM table: its name and columns in CDM order.
#[derive(Debug)]
pub struct CdmTable {
    pub name: &'static str,
    pub columns: Vec<(&'static str, CdmType)>,
}

impl CdmTable {
    /// The CDM type of a column, if the CDM defines it.
    pub fn column(&self, name: &str) -> Option<CdmType> {
        self.columns
            .iter()
            .find(|(c, _)| *c == name)
            .map(|(_, t)| *t)
    }

    /// True when the CDM table is per person (it has `person_id`).
    pub fn is_person_level(&self) -> bool {
        self.column("person_id").is_some()
    }
}

fn tables() -> &'static [CdmTable] {
    static TABLES: std::sync::OnceLock<Vec<CdmTable>> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| {
        SPEC.lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|line| {
                let (name, cols) = line.split_once(':')?;
                let columns = cols
                    .split(',')
                    .filter_map(|c| {
                        let (col, ty) = c.trim().split_once(' ')?;
                        let ty = match ty {
                            "i" => CdmType::Integer,
                            "f" => CdmType::Float,
                            "d" => CdmType::Date,
                            "t" => CdmType::Datetime,
                            _ => CdmType::Text,
                        };
                        Some((col, ty))
                    })
                    .collect();
                Some(CdmTable {
                    name: name.trim(),
                    columns,
                })
            })
            .collect()
    })
}

/// The CDM definition of a table, if `name` is a CDM table.
pub fn table(name: &str) -> Option<&'static CdmTable> {
    tables().iter().find(|t| t.name == name)
}

/// Whether a column of a person-level table identifies a record: the primary
/// key of a person-level CDM table, or a reference to one.
pub fn is_record_id(column: &str) -> bool {
    static IDS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    let ids = IDS.get_or_init(|| {
        let mut ids: Vec<&'static str> = tables()
            .iter()
            .filter(|t| t.is_person_level())
            .filter_map(|t| t.columns.first().map(|c| c.0))
            .filter(|c| *c != "person_id" && c.ends_with("_id"))
            .collect();
        ids.extend([
            "preceding_visit_occurrence_id",
            "preceding_visit_detail_id",
            "parent_visit_detail_id",
            "episode_parent_id",
            "measurement_event_id",
            "observation_event_id",
            "note_event_id",
        ]);
        ids
    });
    ids.contains(&column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parses_every_table() {
        assert!(tables().len() >= 30);
        let de = table("drug_exposure").unwrap();
        assert_eq!(de.columns.len(), 23);
        assert_eq!(de.column("days_supply"), Some(CdmType::Integer));
        assert_eq!(de.column("drug_exposure_start_date"), Some(CdmType::Date));
        assert!(de.is_person_level());
        assert!(!table("concept").unwrap().is_person_level());
        assert!(table("care_certification").is_none());
        assert!(is_record_id("drug_exposure_id"));
        assert!(is_record_id("visit_occurrence_id"));
        assert!(!is_record_id("drug_concept_id"));
        assert!(!is_record_id("person_id"));
    }
}
