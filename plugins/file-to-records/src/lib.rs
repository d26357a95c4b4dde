//! `file-to-records`: turns a clarification or a fault-tolerance decision into filing entries for the integrity record (廉政档案) and personnel record (人事档案).
//!
//! A clarification files its material in both records so that the false
//! allegation cannot follow the official into later appointments; a
//! fault-tolerance decision is filed the same way. Which records receive
//! entries is plugin config (`records`, both by default); summaries are in
//! zh-CN by default or en (`language`). The summaries name the document
//! and the allegation or matter, never the whistleblower.

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde::{Deserialize, Serialize};

/// What to file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The official's identifier in the personnel system.
    pub official_id: String,
    /// Number of the document being filed.
    pub document_ref: String,
    /// Filing date, `YYYY-MM-DD`.
    pub filed_on: String,
    /// The source document.
    pub source: Source,
}

/// The document the filing comes from.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// A clarification (澄清正名).
    Clarification {
        /// The allegation found false.
        allegation: String,
    },
    /// A fault-tolerance decision (容错免责决定).
    FaultToleranceDecision {
        /// The matter assessed.
        matter: String,
        /// `exempted`, `mitigated` or `not_tolerated`.
        outcome: Outcome,
    },
}

/// Outcome of a fault-tolerance decision.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// 免责.
    Exempted,
    /// 从轻减轻.
    Mitigated,
    /// 不予容错.
    NotTolerated,
}

/// A record kept on an official.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Record {
    /// 廉政档案.
    Integrity,
    /// 人事档案.
    Personnel,
}

/// Filing options.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Records that receive an entry, in order.
    pub records: Vec<Record>,
    /// `zh-CN` or `en`.
    pub language: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            records: vec![Record::Integrity, Record::Personnel],
            language: "zh-CN".to_owned(),
        }
    }
}

/// One filing entry.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// The record it goes into.
    pub record: Record,
    /// The official's identifier.
    pub official_id: String,
    /// What the entry says.
    pub summary: String,
    /// The document filed.
    pub document_ref: String,
    /// Filing date.
    pub filed_on: String,
}

/// The filing.
#[derive(Debug, Serialize)]
pub struct Output {
    /// One entry per configured record.
    pub entries: Vec<Entry>,
}

fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10
        || b[4] != b'-'
        || b[7] != b'-'
        || !digits(0..4)
        || !digits(5..7)
        || !digits(8..10)
    {
        return false;
    }
    let (y, m, d): (u32, u32, u32) = (
        s[0..4].parse().unwrap_or(0),
        s[5..7].parse().unwrap_or(0),
        s[8..10].parse().unwrap_or(0),
    );
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (1..=days).contains(&d)
}

/// Builds the entries for `input` under `config`.
pub fn file(config: &Config, input: &Input) -> Result<Output, StepError> {
    let zh = match config.language.as_str() {
        "zh-CN" | "zh" => true,
        "en" => false,
        other => {
            return Err(StepError::permanent(format!(
                "unsupported language {other}, expected zh-CN or en"
            )));
        }
    };
    if config.records.is_empty() {
        return Err(StepError::permanent("records is empty"));
    }
    for (field, value) in [
        ("official_id", &input.official_id),
        ("document_ref", &input.document_ref),
    ] {
        if value.trim().is_empty() {
            return Err(StepError::invalid_input(format!("{field} is empty")));
        }
    }
    if !valid_date(&input.filed_on) {
        return Err(StepError::invalid_input(format!(
            "filed_on {} is not YYYY-MM-DD",
            input.filed_on
        )));
    }
    let doc = input.document_ref.trim();
    let subject = match &input.source {
        Source::Clarification { allegation }
        | Source::FaultToleranceDecision {
            matter: allegation, ..
        } if allegation.trim().is_empty() => {
            return Err(StepError::invalid_input("source text is empty"));
        }
        Source::Clarification { allegation } => allegation.trim(),
        Source::FaultToleranceDecision { matter, .. } => matter.trim(),
    };
    let mut entries = Vec::new();
    for &record in &config.records {
        let summary = match (&input.source, record, zh) {
            (Source::Clarification { .. }, Record::Integrity, true) => {
                format!("澄清正名：经核查，反映的“{subject}”问题不属实，予以澄清（{doc}）。")
            }
            (Source::Clarification { .. }, Record::Personnel, true) => {
                format!("澄清正名材料归档：“{subject}”问题已澄清，不影响使用（{doc}）。")
            }
            (Source::Clarification { .. }, Record::Integrity, false) => {
                format!(
                    "Clarification: the allegation \"{subject}\" was verified as unfounded and clarified ({doc})."
                )
            }
            (Source::Clarification { .. }, Record::Personnel, false) => {
                format!(
                    "Clarification material filed: \"{subject}\" was clarified and does not affect appointment ({doc})."
                )
            }
            (Source::FaultToleranceDecision { outcome, .. }, _, true) => {
                let o = match outcome {
                    Outcome::Exempted => "予以免责",
                    Outcome::Mitigated => "从轻或减轻处理",
                    Outcome::NotTolerated => "不予容错",
                };
                format!("容错免责决定：关于“{subject}”，{o}（{doc}）。")
            }
            (Source::FaultToleranceDecision { outcome, .. }, _, false) => {
                let o = match outcome {
                    Outcome::Exempted => "exempted from accountability",
                    Outcome::Mitigated => "accountability mitigated",
                    Outcome::NotTolerated => "fault tolerance not applied",
                };
                format!("Fault-tolerance decision on \"{subject}\": {o} ({doc}).")
            }
        };
        entries.push(Entry {
            record,
            official_id: input.official_id.trim().to_owned(),
            summary,
            document_ref: doc.to_owned(),
            filed_on: input.filed_on.clone(),
        });
    }
    Ok(Output { entries })
}

/// The step: reads the config and builds the entries.
pub fn run(ctx: &Context, input: Input) -> Result<Output, StepError> {
    let config: Config = ctx.config()?;
    file(&config, &input)
}

export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;
    use clearflow_plugin_sdk::testing::call;
    use serde_json::{Value, json};

    fn check(config: &str, input: Value) -> Result<Value, StepError> {
        call(run, config, &input.to_string())
    }

    fn clarification() -> Value {
        json!({
            "official_id": "E-1024",
            "document_ref": "某纪澄〔2024〕3号",
            "filed_on": "2024-05-10",
            "source": { "kind": "clarification", "allegation": "违规收受礼金" }
        })
    }

    #[test]
    fn clarification_files_both_records() {
        let out = check("", clarification()).unwrap();
        let entries = out["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["record"], "integrity");
        assert_eq!(entries[1]["record"], "personnel");
        assert_eq!(
            entries[0]["summary"],
            "澄清正名：经核查，反映的“违规收受礼金”问题不属实，予以澄清（某纪澄〔2024〕3号）。"
        );
        for e in entries {
            assert_eq!(e["official_id"], "E-1024");
            assert_eq!(e["document_ref"], "某纪澄〔2024〕3号");
            assert_eq!(e["filed_on"], "2024-05-10");
        }
    }

    #[test]
    fn decision_in_english_to_configured_record() {
        let input = json!({
            "official_id": "E-7",
            "document_ref": "FT-2024-7",
            "filed_on": "2024-02-29",
            "source": { "kind": "fault_tolerance_decision", "matter": "bridge project", "outcome": "mitigated" }
        });
        let out = check(r#"{"records": ["personnel"], "language": "en"}"#, input).unwrap();
        assert_eq!(
            out,
            json!({ "entries": [{
                "record": "personnel",
                "official_id": "E-7",
                "summary": "Fault-tolerance decision on \"bridge project\": accountability mitigated (FT-2024-7).",
                "document_ref": "FT-2024-7",
                "filed_on": "2024-02-29"
            }]})
        );
    }

    #[test]
    fn invalid_inputs() {
        let mut input = clarification();
        input["filed_on"] = json!("2024-02-30");
        assert!(
            matches!(check("", input), Err(StepError::InvalidInput(m)) if m.contains("YYYY-MM-DD"))
        );
        let mut input = clarification();
        input["official_id"] = json!("");
        assert_eq!(
            check("", input).unwrap_err(),
            StepError::invalid_input("official_id is empty")
        );
        let mut input = clarification();
        input["whistleblower_name"] = json!("王五");
        assert!(
            matches!(check("", input), Err(StepError::InvalidInput(m)) if m.contains("unknown field"))
        );
        let mut input = clarification();
        input["source"]["allegation"] = json!(" ");
        assert_eq!(
            check("", input).unwrap_err(),
            StepError::invalid_input("source text is empty")
        );
    }

    #[test]
    fn bad_config_is_permanent() {
        assert!(matches!(
            check(r#"{"records": []}"#, clarification()),
            Err(StepError::Permanent(_))
        ));
        assert!(matches!(
            check(r#"{"language": "de"}"#, clarification()),
            Err(StepError::Permanent(_))
        ));
    }
}
