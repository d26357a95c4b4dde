//! `grade-report`: grades a real-name report as pending, suspected or key (待定 / 疑似 / 重点).
//!
//! The grade decides whether a case goes to the monthly joint review (三室会审):
//! suspected and key cases do. The rule is a transparent score, so the
//! reasons can be shown to the people who decide:
//!
//! - each distinct *key* keyword in the content (default: 贿赂, 挪用, 滥用职权,
//!   bribery, embezzlement, …) adds `key_keyword_points` (3);
//! - each distinct *suspected* keyword (违规, 公款吃喝, gift, negligence, …)
//!   adds `suspected_keyword_points` (1);
//! - each evidence item adds `evidence_points` (1), at most `evidence_cap` (3) items count;
//! - each earlier substantiated report against the same person adds
//!   `prior_substantiated_points` (2);
//! - a score of at least `key_threshold` (6) grades *key*, at least
//!   `suspected_threshold` (2) *suspected*, anything lower *pending*.
//!
//! Every number and both keyword lists are plugin config. English keywords
//! match case-insensitively. Only real-name reports are graded: an anonymous
//! report is `invalid-input`. `repeat` is true when the same reporter already
//! reported the same matter, which suppresses a second acknowledgement.

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde::{Deserialize, Serialize};

/// The report to grade; fields other than these are ignored.
#[derive(Debug, Deserialize)]
pub struct Input {
    /// The text of the report.
    pub content: String,
    /// Who reported; only whether it was under a real name matters here.
    pub reporter: Reporter,
    /// Earlier reports about the same matter and person.
    #[serde(default)]
    pub history: History,
    /// Number of evidence items (attachments, documents) supplied with the report.
    #[serde(default)]
    pub evidence_count: u32,
}

/// The reporter, reduced to what grading needs; identity never reaches this plugin.
#[derive(Debug, Deserialize)]
pub struct Reporter {
    /// Whether the report was made under a real name (实名).
    pub real_name: bool,
}

/// Earlier reports on the same matter.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct History {
    /// Reports of the same matter by the same reporter before this one.
    pub prior_reports: u32,
    /// Earlier reports against the same person that were substantiated.
    pub prior_substantiated: u32,
}

/// Grading rules; every field has a default.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Keywords that point to serious misconduct.
    pub key_keywords: Vec<String>,
    /// Keywords that point to possible misconduct.
    pub suspected_keywords: Vec<String>,
    /// Points per distinct key keyword.
    pub key_keyword_points: u32,
    /// Points per distinct suspected keyword.
    pub suspected_keyword_points: u32,
    /// Points per evidence item.
    pub evidence_points: u32,
    /// Evidence items counted at most.
    pub evidence_cap: u32,
    /// Points per earlier substantiated report.
    pub prior_substantiated_points: u32,
    /// Lowest score graded suspected.
    pub suspected_threshold: u32,
    /// Lowest score graded key.
    pub key_threshold: u32,
}

impl Default for Config {
    fn default() -> Self {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect();
        Config {
            key_keywords: words(&[
                "贿赂",
                "受贿",
                "行贿",
                "索贿",
                "挪用",
                "贪污",
                "侵占",
                "滥用职权",
                "利益输送",
                "权钱交易",
                "bribe",
                "bribery",
                "embezzle",
                "misappropriat",
                "abuse of power",
                "kickback",
            ]),
            suspected_keywords: words(&[
                "违规",
                "公款吃喝",
                "收受礼金",
                "礼品",
                "插手",
                "干预",
                "经商",
                "兼职取酬",
                "玩忽职守",
                "失职",
                "任人唯亲",
                "gift",
                "banquet",
                "misconduct",
                "negligence",
                "conflict of interest",
                "nepotism",
            ]),
            key_keyword_points: 3,
            suspected_keyword_points: 1,
            evidence_points: 1,
            evidence_cap: 3,
            prior_substantiated_points: 2,
            suspected_threshold: 2,
            key_threshold: 6,
        }
    }
}

/// The grade of a real-name report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grade {
    /// 待定: not enough to go to joint review.
    Pending,
    /// 疑似: goes to the monthly joint review.
    Suspected,
    /// 重点: goes to the monthly joint review with priority.
    Key,
}

/// The grading result.
#[derive(Debug, Serialize)]
pub struct Output {
    /// The grade.
    pub grade: Grade,
    /// The total score behind the grade.
    pub score: u32,
    /// One line per rule that contributed, then the threshold decision.
    pub reasons: Vec<String>,
    /// Whether the reporter already reported the same matter.
    pub repeat: bool,
}

/// Grades a report under `config`.
pub fn grade(config: &Config, input: &Input) -> Result<Output, StepError> {
    if !input.reporter.real_name {
        return Err(StepError::invalid_input(
            "only real-name reports are graded (reporter.real_name is false)",
        ));
    }
    if input.content.trim().is_empty() {
        return Err(StepError::invalid_input("content is empty"));
    }
    if config.suspected_threshold > config.key_threshold {
        return Err(StepError::permanent(format!(
            "suspected_threshold {} is above key_threshold {}",
            config.suspected_threshold, config.key_threshold
        )));
    }
    let content = input.content.to_lowercase();
    let mut score = 0;
    let mut reasons = Vec::new();
    // A keyword inside a longer one already matched (受贿 in 收受贿赂) must not
    // count twice, so longer keywords claim their spans first.
    let mut keywords: Vec<(String, &str, u32, &'static str)> = Vec::new();
    for (words, points, kind) in [
        (&config.key_keywords, config.key_keyword_points, "key"),
        (
            &config.suspected_keywords,
            config.suspected_keyword_points,
            "suspected",
        ),
    ] {
        for word in words {
            let needle = word.trim().to_lowercase();
            if !needle.is_empty() && !keywords.iter().any(|k| k.0 == needle) {
                keywords.push((needle, word.trim(), points, kind));
            }
        }
    }
    let mut order: Vec<usize> = (0..keywords.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(keywords[i].0.len()));
    let mut claimed: Vec<(usize, usize)> = Vec::new();
    let mut hits = vec![false; keywords.len()];
    for i in order {
        let needle = &keywords[i].0;
        for (start, _) in content.match_indices(needle.as_str()) {
            let end = start + needle.len();
            if claimed.iter().all(|&(s, e)| end <= s || start >= e) {
                claimed.push((start, end));
                hits[i] = true;
            }
        }
    }
    for (i, (_, word, points, kind)) in keywords.iter().enumerate() {
        if hits[i] {
            score += points;
            reasons.push(format!("{kind} keyword \"{word}\" (+{points})"));
        }
    }
    let evidence = input.evidence_count.min(config.evidence_cap);
    if evidence > 0 {
        let points = evidence * config.evidence_points;
        score += points;
        reasons.push(format!(
            "{} evidence item(s), {evidence} counted (+{points})",
            input.evidence_count
        ));
    }
    if input.history.prior_substantiated > 0 {
        let points = input.history.prior_substantiated * config.prior_substantiated_points;
        score += points;
        reasons.push(format!(
            "{} earlier substantiated report(s) (+{points})",
            input.history.prior_substantiated
        ));
    }
    let grade = if score >= config.key_threshold {
        reasons.push(format!(
            "score {score} reaches the key threshold {}",
            config.key_threshold
        ));
        Grade::Key
    } else if score >= config.suspected_threshold {
        reasons.push(format!(
            "score {score} reaches the suspected threshold {}",
            config.suspected_threshold
        ));
        Grade::Suspected
    } else {
        reasons.push(format!(
            "score {score} is below the suspected threshold {}",
            config.suspected_threshold
        ));
        Grade::Pending
    };
    let repeat = input.history.prior_reports > 0;
    if repeat {
        reasons.push(format!(
            "repeat report: {} earlier report(s) of the same matter",
            input.history.prior_reports
        ));
    }
    Ok(Output {
        grade,
        score,
        reasons,
        repeat,
    })
}

/// The step: reads the config and grades the input.
pub fn run(ctx: &Context, input: Input) -> Result<Output, StepError> {
    let config: Config = ctx.config()?;
    grade(&config, &input)
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

    fn report(content: &str) -> Value {
        json!({ "content": content, "reporter": { "real_name": true, "phone_on_file": true } })
    }

    #[test]
    fn plain_complaint_is_pending() {
        let out = check("", report("他上班经常迟到。")).unwrap();
        assert_eq!(out["grade"], "pending");
        assert_eq!(out["score"], 0);
        assert_eq!(out["repeat"], false);
    }

    #[test]
    fn key_keyword_with_evidence_is_key() {
        let mut input = report("举报某局长收受贿赂，并挪用专项资金。");
        input["evidence_count"] = json!(1);
        let out = check("", input).unwrap();
        assert_eq!(out["grade"], "key");
        // 收受贿赂 counts once, as 贿赂 or 受贿, not as both.
        assert_eq!(out["score"], 7);
        let reasons: Vec<&str> = out["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        assert!(reasons.iter().filter(|r| r.contains("贿")).count() == 1);
        assert!(reasons.contains(&"key keyword \"挪用\" (+3)"));
    }

    #[test]
    fn suspected_keywords_and_history() {
        let mut input = report("He accepted a GIFT from a contractor.");
        input["history"] = json!({ "prior_reports": 1, "prior_substantiated": 0 });
        input["evidence_count"] = json!(1);
        let out = check("", input).unwrap();
        assert_eq!(out["grade"], "suspected");
        assert_eq!(out["score"], 2);
        assert_eq!(out["repeat"], true);
    }

    #[test]
    fn prior_substantiated_reports_count() {
        let mut input = report("滥用职权");
        input["history"] = json!({ "prior_substantiated": 2 });
        assert_eq!(check("", input).unwrap()["grade"], "key");
    }

    #[test]
    fn evidence_is_capped() {
        let mut input = report("nothing notable");
        input["evidence_count"] = json!(50);
        let out = check("", input).unwrap();
        assert_eq!(out["score"], 3);
    }

    #[test]
    fn config_replaces_keywords_and_thresholds() {
        let config = r#"{"key_keywords": ["围标"], "suspected_keywords": [], "key_threshold": 3}"#;
        assert_eq!(
            check(config, report("项目存在围标串标")).unwrap()["grade"],
            "key"
        );
        assert_eq!(
            check(config, report("收受贿赂")).unwrap()["grade"],
            "pending"
        );
    }

    #[test]
    fn anonymous_report_is_invalid_input() {
        let input = json!({ "content": "贿赂", "reporter": { "real_name": false } });
        assert!(
            matches!(check("", input), Err(StepError::InvalidInput(m)) if m.contains("real-name"))
        );
    }

    #[test]
    fn missing_reporter_is_invalid_input_with_serde_message() {
        let err = check("", json!({ "content": "x" })).unwrap_err();
        assert!(
            matches!(err, StepError::InvalidInput(m) if m.contains("missing field `reporter`"))
        );
    }

    #[test]
    fn bad_config_is_permanent() {
        assert!(matches!(
            check(r#"{"key_threshold": "high"}"#, report("x")),
            Err(StepError::Permanent(_))
        ));
        assert!(matches!(
            check(r#"{"unknown_rule": 1}"#, report("x")),
            Err(StepError::Permanent(_))
        ));
        let inverted = r#"{"suspected_threshold": 9, "key_threshold": 4}"#;
        assert!(matches!(
            check(inverted, report("x")),
            Err(StepError::Permanent(_))
        ));
    }
}
