//! `assess-fault-tolerance`: scores the six fault-tolerance factors and applies the exclusion list (容错免责评估).
//!
//! The assessment records six factors, each rated and backed by evidence:
//! motive and attitude (动机态度), objective conditions (客观条件), procedure
//! (程序), nature (性质), consequences (后果) and remedial action (挽回).
//! Ratings score `favourable` 2, `neutral` 1, `unfavourable` 0, times the
//! factor's weight (1 by default, so the score runs from 0 to 12).
//!
//! The recommendation is:
//! - `not_tolerated` (不予容错) when any exclusion is hit, whatever the score;
//!   the default exclusions are the six of the policy (vanity projects and a
//!   distorted view of achievements, personal gain, knowingly breaking an
//!   explicit prohibition, repeat offence, falsification or obstruction,
//!   serious loss); the list is plugin config;
//! - `not_tolerated` when motive is rated unfavourable and
//!   `unfavourable_motive_excludes` is on (the default): tolerance is for
//!   acting in the public interest (出于公心);
//! - otherwise `exempted` (免责) at `exempt_min_score` (10) or more,
//!   `mitigated` (从轻减轻) at `mitigate_min_score` (6) or more, else
//!   `not_tolerated`.
//!
//! A missing factor, empty evidence or an unknown exclusion id is
//! `invalid-input`. The plugin recommends; people decide.

use std::collections::BTreeMap;

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde::{Deserialize, Serialize};

/// The six factors, in policy order, with their Chinese labels.
pub const FACTORS: [(&str, &str); 6] = [
    ("motive", "动机态度"),
    ("objective_conditions", "客观条件"),
    ("procedure", "程序"),
    ("nature", "性质"),
    ("consequences", "后果"),
    ("remedial_action", "挽回"),
];

/// How a factor weighs in the official's favour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rating {
    /// Speaks for tolerance.
    Favourable,
    /// Neither for nor against.
    Neutral,
    /// Speaks against tolerance.
    Unfavourable,
}

impl Rating {
    fn points(self) -> u32 {
        match self {
            Rating::Favourable => 2,
            Rating::Neutral => 1,
            Rating::Unfavourable => 0,
        }
    }
}

/// One assessed factor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Factor {
    /// The rating.
    pub rating: Rating,
    /// What the rating rests on; must not be empty.
    pub evidence: String,
}

/// The assessment to score.
#[derive(Debug, Deserialize)]
pub struct Input {
    /// The six factors by id (`motive`, `objective_conditions`, `procedure`,
    /// `nature`, `consequences`, `remedial_action`).
    pub factors: BTreeMap<String, Factor>,
    /// Exclusion situations by id; `true` means the situation was found.
    /// Ids not mentioned were not found.
    #[serde(default)]
    pub exclusions: BTreeMap<String, bool>,
}

/// An exclusion situation that rules out tolerance.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Exclusion {
    /// Stable id used in input and output.
    pub id: String,
    /// Human-readable description.
    pub label: String,
}

/// Scoring rules; every field has a default.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The exclusion situations.
    pub exclusions: Vec<Exclusion>,
    /// Weight per factor id; factors not listed weigh 1.
    pub weights: BTreeMap<String, u32>,
    /// Lowest score recommended for exemption.
    pub exempt_min_score: u32,
    /// Lowest score recommended for mitigation.
    pub mitigate_min_score: u32,
    /// Whether an unfavourable motive alone rules out tolerance.
    pub unfavourable_motive_excludes: bool,
}

impl Default for Config {
    fn default() -> Self {
        let ex = |id: &str, label: &str| Exclusion {
            id: id.to_owned(),
            label: label.to_owned(),
        };
        Config {
            exclusions: vec![
                ex(
                    "vanity_project",
                    "错误政绩观、搞形象工程 (distorted view of achievements, vanity projects)",
                ),
                ex("personal_gain", "谋取私利 (personal gain)"),
                ex(
                    "known_prohibition",
                    "明知故犯、违反明令禁止 (knowingly breaking an explicit prohibition)",
                ),
                ex("repeat_offence", "屡教不改、重复犯错 (repeat offence)"),
                ex(
                    "falsification",
                    "弄虚作假、对抗审查 (falsification or obstruction)",
                ),
                ex("serious_loss", "造成重大损失或恶劣影响 (serious loss)"),
            ],
            weights: BTreeMap::new(),
            exempt_min_score: 10,
            mitigate_min_score: 6,
            unfavourable_motive_excludes: true,
        }
    }
}

/// The recommendation to the fault-tolerance panel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recommendation {
    /// 免责: no accountability.
    Exempted,
    /// 从轻减轻: lighter accountability.
    Mitigated,
    /// 不予容错: no tolerance.
    NotTolerated,
}

/// The scoring result.
#[derive(Debug, Serialize)]
pub struct Output {
    /// The recommendation.
    pub recommendation: Recommendation,
    /// Weighted score of the factors.
    pub score: u32,
    /// Highest possible score under the weights.
    pub max_score: u32,
    /// One line per factor, then the rule that decided.
    pub reasons: Vec<String>,
    /// Ids of the exclusions found, in config order.
    pub exclusions_hit: Vec<String>,
}

/// Scores an assessment under `config`.
pub fn assess(config: &Config, input: &Input) -> Result<Output, StepError> {
    if config.mitigate_min_score > config.exempt_min_score {
        return Err(StepError::permanent(format!(
            "mitigate_min_score {} is above exempt_min_score {}",
            config.mitigate_min_score, config.exempt_min_score
        )));
    }
    if let Some(unknown) = input
        .factors
        .keys()
        .find(|k| !FACTORS.iter().any(|(id, _)| id == k))
    {
        return Err(StepError::invalid_input(format!(
            "unknown factor {unknown}"
        )));
    }
    if let Some(unknown) = input
        .exclusions
        .keys()
        .find(|k| !config.exclusions.iter().any(|e| &e.id == *k))
    {
        return Err(StepError::invalid_input(format!(
            "unknown exclusion {unknown}"
        )));
    }
    let mut score = 0;
    let mut max_score = 0;
    let mut reasons = Vec::new();
    for (id, label) in FACTORS {
        let factor = input
            .factors
            .get(id)
            .ok_or_else(|| StepError::invalid_input(format!("factor {id} ({label}) is missing")))?;
        if factor.evidence.trim().is_empty() {
            return Err(StepError::invalid_input(format!(
                "factor {id} ({label}) has no evidence"
            )));
        }
        let weight = config.weights.get(id).copied().unwrap_or(1);
        let points = factor.rating.points() * weight;
        score += points;
        max_score += 2 * weight;
        let rating = match factor.rating {
            Rating::Favourable => "favourable",
            Rating::Neutral => "neutral",
            Rating::Unfavourable => "unfavourable",
        };
        reasons.push(format!(
            "{label} ({id}): {rating} (+{points}): {}",
            factor.evidence.trim()
        ));
    }
    let exclusions_hit: Vec<String> = config
        .exclusions
        .iter()
        .filter(|e| input.exclusions.get(&e.id).copied().unwrap_or(false))
        .map(|e| e.id.clone())
        .collect();
    let motive_unfavourable = input
        .factors
        .get("motive")
        .is_some_and(|f| f.rating == Rating::Unfavourable);
    let recommendation = if !exclusions_hit.is_empty() {
        for e in config
            .exclusions
            .iter()
            .filter(|e| exclusions_hit.contains(&e.id))
        {
            reasons.push(format!("exclusion {}: {}: not tolerated", e.id, e.label));
        }
        Recommendation::NotTolerated
    } else if motive_unfavourable && config.unfavourable_motive_excludes {
        reasons.push("motive is unfavourable: not tolerated".to_owned());
        Recommendation::NotTolerated
    } else if score >= config.exempt_min_score {
        reasons.push(format!(
            "score {score} of {max_score} reaches {} for exemption",
            config.exempt_min_score
        ));
        Recommendation::Exempted
    } else if score >= config.mitigate_min_score {
        reasons.push(format!(
            "score {score} of {max_score} reaches {} for mitigation",
            config.mitigate_min_score
        ));
        Recommendation::Mitigated
    } else {
        reasons.push(format!(
            "score {score} of {max_score} is below {} for mitigation",
            config.mitigate_min_score
        ));
        Recommendation::NotTolerated
    };
    Ok(Output {
        recommendation,
        score,
        max_score,
        reasons,
        exclusions_hit,
    })
}

/// The step: reads the config and scores the input.
pub fn run(ctx: &Context, input: Input) -> Result<Output, StepError> {
    let config: Config = ctx.config()?;
    assess(&config, &input)
}

export_step!(run);

#[cfg(test)]
mod tests {
    use super::*;
    use clearflow_plugin_sdk::testing::call;
    use serde_json::{Value, json};

    fn factors(ratings: [&str; 6]) -> Value {
        let mut map = serde_json::Map::new();
        for ((id, _), rating) in FACTORS.iter().zip(ratings) {
            map.insert(
                (*id).to_owned(),
                json!({ "rating": rating, "evidence": format!("record for {id}") }),
            );
        }
        Value::Object(map)
    }

    fn check(config: &str, input: Value) -> Result<Value, StepError> {
        call(run, config, &input.to_string())
    }

    const ALL_GOOD: [&str; 6] = ["favourable"; 6];

    #[test]
    fn all_favourable_is_exempted() {
        let out = check("", json!({ "factors": factors(ALL_GOOD) })).unwrap();
        assert_eq!(out["recommendation"], "exempted");
        assert_eq!(out["score"], 12);
        assert_eq!(out["max_score"], 12);
        assert_eq!(out["exclusions_hit"], json!([]));
        assert_eq!(out["reasons"].as_array().unwrap().len(), 7);
    }

    #[test]
    fn middling_scores_are_mitigated() {
        let ratings = [
            "favourable",
            "neutral",
            "neutral",
            "neutral",
            "unfavourable",
            "neutral",
        ];
        let out = check("", json!({ "factors": factors(ratings) })).unwrap();
        assert_eq!(out["recommendation"], "mitigated");
        assert_eq!(out["score"], 6);
    }

    #[test]
    fn low_score_is_not_tolerated() {
        let ratings = [
            "neutral",
            "unfavourable",
            "unfavourable",
            "neutral",
            "unfavourable",
            "neutral",
        ];
        assert_eq!(
            check("", json!({ "factors": factors(ratings) })).unwrap()["recommendation"],
            "not_tolerated"
        );
    }

    #[test]
    fn any_exclusion_forces_not_tolerated() {
        let input = json!({ "factors": factors(ALL_GOOD), "exclusions": { "personal_gain": true, "serious_loss": false } });
        let out = check("", input).unwrap();
        assert_eq!(out["recommendation"], "not_tolerated");
        assert_eq!(out["exclusions_hit"], json!(["personal_gain"]));
        assert_eq!(out["score"], 12);
    }

    #[test]
    fn unfavourable_motive_excludes_unless_configured() {
        let ratings = [
            "unfavourable",
            "favourable",
            "favourable",
            "favourable",
            "favourable",
            "favourable",
        ];
        let input = json!({ "factors": factors(ratings) });
        assert_eq!(
            check("", input.clone()).unwrap()["recommendation"],
            "not_tolerated"
        );
        let config = r#"{"unfavourable_motive_excludes": false}"#;
        assert_eq!(check(config, input).unwrap()["recommendation"], "exempted");
    }

    #[test]
    fn missing_evidence_is_invalid_input() {
        let mut f = factors(ALL_GOOD);
        f["procedure"]["evidence"] = json!("  ");
        let err = check("", json!({ "factors": f })).unwrap_err();
        assert_eq!(
            err,
            StepError::invalid_input("factor procedure (程序) has no evidence")
        );
        let mut f = factors(ALL_GOOD);
        f["remedial_action"] = json!({ "rating": "favourable" });
        assert!(
            matches!(check("", json!({ "factors": f })), Err(StepError::InvalidInput(m)) if m.contains("missing field `evidence`"))
        );
    }

    #[test]
    fn missing_factor_is_invalid_input() {
        let mut f = factors(ALL_GOOD);
        f.as_object_mut().unwrap().remove("nature");
        assert_eq!(
            check("", json!({ "factors": f })).unwrap_err(),
            StepError::invalid_input("factor nature (性质) is missing")
        );
    }

    #[test]
    fn unknown_exclusion_is_invalid_input() {
        let input = json!({ "factors": factors(ALL_GOOD), "exclusions": { "vanity": true } });
        assert_eq!(
            check("", input).unwrap_err(),
            StepError::invalid_input("unknown exclusion vanity")
        );
    }

    #[test]
    fn exclusion_list_and_weights_are_configurable() {
        let config = r#"{"exclusions": [{"id": "election_year", "label": "换届期间"}], "weights": {"consequences": 3}}"#;
        let input =
            json!({ "factors": factors(ALL_GOOD), "exclusions": { "election_year": true } });
        let out = check(config, input).unwrap();
        assert_eq!(out["exclusions_hit"], json!(["election_year"]));
        assert_eq!(out["max_score"], 16);
        let input =
            json!({ "factors": factors(ALL_GOOD), "exclusions": { "personal_gain": true } });
        assert!(matches!(
            check(config, input),
            Err(StepError::InvalidInput(_))
        ));
    }
}
