//! `render-document`: renders a clarification notice (澄清正名通知书) or a fault-tolerance decision (容错免责决定书).
//!
//! Output is `{title, text, html}` in zh-CN (the default, configurable with
//! `default_language`) or en. The HTML escapes every input value. Inputs
//! reject unknown fields, so nothing about the whistleblower can be passed in
//! by mistake: the notice names only the issuer, the official and the
//! allegation found false, and states that the clarification concerns only
//! that allegation, not a general appraisal of the person.

use clearflow_plugin_sdk::{Context, StepError, export_step};
use serde::{Deserialize, Serialize};

/// A document to render.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// `zh-CN` or `en`; the configured default when absent.
    #[serde(default)]
    pub language: Option<String>,
    /// Document number, e.g. `某纪澄〔2024〕3号`.
    pub number: String,
    /// The issuing body.
    pub issuer: String,
    /// Date of issue, `YYYY-MM-DD`.
    pub date: String,
    /// The official the document concerns.
    pub official: Official,
    /// Which document, with its specific fields.
    pub document: Document,
    /// Recipients of copies (抄送), e.g. the official's department head.
    #[serde(default)]
    pub copies_to: Vec<String>,
}

/// The official the document is addressed to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Official {
    /// Name as addressed.
    pub name: String,
    /// Position, e.g. `某局局长`.
    pub position: String,
}

/// The two document kinds.
#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Document {
    /// 澄清正名通知书.
    Clarification {
        /// The allegation found false, as a phrase: `违规收受礼金`.
        allegation: String,
        /// What verification found.
        findings: String,
    },
    /// 容错免责决定书.
    FaultToleranceDecision {
        /// The matter assessed.
        matter: String,
        /// `exempted`, `mitigated` or `not_tolerated`.
        outcome: Outcome,
        /// Reasons for the decision.
        reasons: Vec<String>,
        /// Rules the decision rests on.
        basis: String,
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

/// Rendering options.
#[derive(Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Language when the input names none.
    pub default_language: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_language: "zh-CN".to_owned(),
        }
    }
}

/// The rendered document.
#[derive(Debug, Serialize)]
pub struct Output {
    /// The document title.
    pub title: String,
    /// Plain text, one paragraph per line.
    pub text: String,
    /// An HTML fragment (`<article>`), every value escaped.
    pub html: String,
}

#[derive(Clone, Copy, PartialEq)]
enum Lang {
    Zh,
    En,
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn parse_date(s: &str) -> Option<(u32, u32, u32)> {
    let mut parts = s.split('-');
    let (y, m, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    let (y, m, d) = (y.parse().ok()?, m.parse().ok()?, d.parse().ok()?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days = match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    (1..=days).contains(&d).then_some((y, m, d))
}

fn require(field: &str, value: &str) -> Result<(), StepError> {
    if value.trim().is_empty() {
        return Err(StepError::invalid_input(format!("{field} is empty")));
    }
    Ok(())
}

/// A document as a title, paragraphs and a closing block.
struct Layout {
    title: String,
    number: String,
    salutation: String,
    paragraphs: Vec<String>,
    list: Vec<String>,
    closing: Vec<String>,
    copies: Option<String>,
}

impl Layout {
    fn text(&self) -> String {
        let mut lines = vec![
            self.title.clone(),
            self.number.clone(),
            String::new(),
            self.salutation.clone(),
        ];
        lines.extend(self.paragraphs.iter().cloned());
        lines.extend(
            self.list
                .iter()
                .enumerate()
                .map(|(i, r)| format!("{}. {r}", i + 1)),
        );
        lines.push(String::new());
        lines.extend(self.closing.iter().cloned());
        if let Some(c) = &self.copies {
            lines.push(String::new());
            lines.push(c.clone());
        }
        lines.join("\n")
    }

    fn html(&self, lang: Lang) -> String {
        let e = escape_html;
        let lang = if lang == Lang::Zh { "zh-CN" } else { "en" };
        let mut h = format!("<article class=\"clearflow-document\" lang=\"{lang}\">\n");
        h += &format!(
            "<h1>{}</h1>\n<p class=\"number\">{}</p>\n",
            e(&self.title),
            e(&self.number)
        );
        h += &format!("<p class=\"salutation\">{}</p>\n", e(&self.salutation));
        for p in &self.paragraphs {
            h += &format!("<p>{}</p>\n", e(p));
        }
        if !self.list.is_empty() {
            h += "<ol>\n";
            for r in &self.list {
                h += &format!("<li>{}</li>\n", e(r));
            }
            h += "</ol>\n";
        }
        h += "<p class=\"closing\">";
        h += &self
            .closing
            .iter()
            .map(|l| e(l))
            .collect::<Vec<_>>()
            .join("<br>");
        h += "</p>\n";
        if let Some(c) = &self.copies {
            h += &format!("<p class=\"copies\">{}</p>\n", e(c));
        }
        h += "</article>\n";
        h
    }
}

/// Renders `input` under `config`.
pub fn render(config: &Config, input: &Input) -> Result<Output, StepError> {
    let language = input
        .language
        .as_deref()
        .unwrap_or(&config.default_language);
    let lang = match language {
        "zh-CN" | "zh" => Lang::Zh,
        "en" => Lang::En,
        other => {
            return Err(StepError::invalid_input(format!(
                "unsupported language {other}, expected zh-CN or en"
            )));
        }
    };
    for (field, value) in [
        ("number", &input.number),
        ("issuer", &input.issuer),
        ("official.name", &input.official.name),
        ("official.position", &input.official.position),
    ] {
        require(field, value)?;
    }
    let (y, m, d) = parse_date(&input.date).ok_or_else(|| {
        StepError::invalid_input(format!("date {} is not YYYY-MM-DD", input.date))
    })?;
    let date = match lang {
        Lang::Zh => format!("{y}年{m}月{d}日"),
        Lang::En => input.date.clone(),
    };
    let name = input.official.name.trim();
    let position = input.official.position.trim();
    let issuer = input.issuer.trim();
    let copies = (!input.copies_to.is_empty()).then(|| match lang {
        Lang::Zh => format!("抄送：{}", input.copies_to.join("，")),
        Lang::En => format!("Copies to: {}", input.copies_to.join(", ")),
    });
    let layout = match &input.document {
        Document::Clarification {
            allegation,
            findings,
        } => {
            require("document.allegation", allegation)?;
            require("document.findings", findings)?;
            let (allegation, findings) = (
                allegation.trim(),
                findings.trim().trim_end_matches(['。', '.']),
            );
            match lang {
                Lang::Zh => Layout {
                    title: "澄清正名通知书".to_owned(),
                    number: input.number.clone(),
                    salutation: format!("{name}同志（{position}）："),
                    paragraphs: vec![
                        format!("关于反映你{allegation}的问题，经{issuer}核查，{findings}。经研究，决定予以澄清正名。"),
                        "本澄清仅针对上述反映的具体问题，不作为对你的全面评价。".to_owned(),
                    ],
                    list: vec![],
                    closing: vec![issuer.to_owned(), date],
                    copies,
                },
                Lang::En => Layout {
                    title: "Notice of Clarification".to_owned(),
                    number: input.number.clone(),
                    salutation: format!("To {name} ({position}):"),
                    paragraphs: vec![
                        format!("Regarding the report that you were involved in {allegation}, {issuer} has verified the matter: {findings}. It has been decided to clarify the matter and restore your good name."),
                        "This clarification concerns only the specific allegation above and is not a general appraisal of you.".to_owned(),
                    ],
                    list: vec![],
                    closing: vec![issuer.to_owned(), date],
                    copies,
                },
            }
        }
        Document::FaultToleranceDecision {
            matter,
            outcome,
            reasons,
            basis,
        } => {
            require("document.matter", matter)?;
            require("document.basis", basis)?;
            if reasons.iter().all(|r| r.trim().is_empty()) {
                return Err(StepError::invalid_input("document.reasons is empty"));
            }
            let reasons: Vec<String> = reasons
                .iter()
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty())
                .collect();
            let (matter, basis) = (matter.trim(), basis.trim());
            match lang {
                Lang::Zh => {
                    let decision = match outcome {
                        Outcome::Exempted => "决定对你予以免责",
                        Outcome::Mitigated => "决定对你从轻或减轻处理",
                        Outcome::NotTolerated => "决定不予容错",
                    };
                    Layout {
                        title: "容错免责决定书".to_owned(),
                        number: input.number.clone(),
                        salutation: format!("{name}同志（{position}）："),
                        paragraphs: vec![
                            format!(
                                "关于{matter}一事，{issuer}综合分析动机态度、客观条件、程序方法、性质程度、后果影响和挽回损失等情况，依据{basis}，{decision}。"
                            ),
                            "理由如下：".to_owned(),
                        ],
                        list: reasons,
                        closing: vec![issuer.to_owned(), date],
                        copies,
                    }
                }
                Lang::En => {
                    let decision = match outcome {
                        Outcome::Exempted => {
                            "it has been decided to exempt you from accountability"
                        }
                        Outcome::Mitigated => {
                            "it has been decided to apply lighter or mitigated accountability"
                        }
                        Outcome::NotTolerated => {
                            "it has been decided that fault tolerance does not apply"
                        }
                    };
                    Layout {
                        title: "Fault-Tolerance Decision".to_owned(),
                        number: input.number.clone(),
                        salutation: format!("To {name} ({position}):"),
                        paragraphs: vec![
                            format!(
                                "Regarding {matter}, {issuer} has weighed motive and attitude, objective conditions, procedure, nature, consequences and remedial action and, under {basis}, {decision}."
                            ),
                            "Reasons:".to_owned(),
                        ],
                        list: reasons,
                        closing: vec![issuer.to_owned(), date],
                        copies,
                    }
                }
            }
        }
    };
    Ok(Output {
        title: layout.title.clone(),
        text: layout.text(),
        html: layout.html(lang),
    })
}

/// The step: reads the config and renders the input.
pub fn run(ctx: &Context, input: Input) -> Result<Output, StepError> {
    let config: Config = ctx.config()?;
    render(&config, &input)
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
            "number": "某纪澄〔2024〕3号",
            "issuer": "某市纪委监委",
            "date": "2024-05-10",
            "official": { "name": "张三", "position": "某局局长" },
            "document": { "kind": "clarification", "allegation": "违规收受礼金", "findings": "反映问题不属实。" },
            "copies_to": ["某局党组书记"]
        })
    }

    fn decision() -> Value {
        json!({
            "language": "en",
            "number": "FT-2024-7",
            "issuer": "City Commission",
            "date": "2024-02-29",
            "official": { "name": "Li Si", "position": "Director" },
            "document": {
                "kind": "fault_tolerance_decision",
                "matter": "the early start of the <bridge> project",
                "outcome": "exempted",
                "reasons": ["acted for the public interest", "followed collective decision-making"],
                "basis": "the Measures on Fault Tolerance"
            }
        })
    }

    #[test]
    fn clarification_in_chinese() {
        let out = check("", clarification()).unwrap();
        assert_eq!(out["title"], "澄清正名通知书");
        let text = out["text"].as_str().unwrap();
        assert!(text.contains("张三同志（某局局长）："));
        assert!(text.contains("关于反映你违规收受礼金的问题，经某市纪委监委核查，反映问题不属实。经研究，决定予以澄清正名。"));
        assert!(text.contains("不作为对你的全面评价"));
        assert!(text.contains("2024年5月10日"));
        assert!(text.ends_with("抄送：某局党组书记"));
        assert!(
            out["html"]
                .as_str()
                .unwrap()
                .starts_with("<article class=\"clearflow-document\" lang=\"zh-CN\">")
        );
    }

    #[test]
    fn decision_in_english_escapes_html() {
        let out = check("", decision()).unwrap();
        assert_eq!(out["title"], "Fault-Tolerance Decision");
        let html = out["html"].as_str().unwrap();
        assert!(html.contains("the early start of the &lt;bridge&gt; project"));
        assert!(!html.contains("<bridge>"));
        assert!(html.contains("<li>acted for the public interest</li>"));
        let text = out["text"].as_str().unwrap();
        assert!(text.contains("exempt you from accountability"));
        assert!(text.contains("2. followed collective decision-making"));
    }

    #[test]
    fn language_default_is_configurable() {
        let mut input = decision();
        input.as_object_mut().unwrap().remove("language");
        assert_eq!(check("", input.clone()).unwrap()["title"], "容错免责决定书");
        assert_eq!(
            check(r#"{"default_language": "en"}"#, input).unwrap()["title"],
            "Fault-Tolerance Decision"
        );
    }

    #[test]
    fn whistleblower_fields_are_refused() {
        let mut input = clarification();
        input["whistleblower"] = json!({ "name": "王五" });
        let err = check("", input).unwrap_err();
        assert!(
            matches!(err, StepError::InvalidInput(m) if m.contains("unknown field `whistleblower`"))
        );
        let mut input = clarification();
        input["document"]["reporter"] = json!("王五");
        assert!(matches!(check("", input), Err(StepError::InvalidInput(_))));
    }

    #[test]
    fn bad_dates_and_languages_are_invalid_input() {
        for date in ["2023-02-29", "2024-13-01", "10/05/2024", "2024-5-1"] {
            let mut input = clarification();
            input["date"] = json!(date);
            assert!(
                matches!(check("", input), Err(StepError::InvalidInput(m)) if m.contains("YYYY-MM-DD")),
                "{date}"
            );
        }
        let mut input = clarification();
        input["language"] = json!("fr");
        assert!(
            matches!(check("", input), Err(StepError::InvalidInput(m)) if m.contains("unsupported language fr"))
        );
    }

    #[test]
    fn empty_required_text_is_invalid_input() {
        let mut input = clarification();
        input["document"]["findings"] = json!(" ");
        assert_eq!(
            check("", input).unwrap_err(),
            StepError::invalid_input("document.findings is empty")
        );
    }

    #[test]
    fn escape_covers_quotes_and_ampersands() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
