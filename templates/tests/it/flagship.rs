//! The templates of the flagship workflows: each renders in both locales with the data its notify steps give.

use clearflow_templates::{Rendered, Templates};
use serde_json::{Value, json};

use crate::util::{context, shipped};

fn render(templates: &Templates, name: &str, locale: &str, data: &Value) -> Rendered {
    templates
        .render(name, Some(locale), &context(data.clone()))
        .unwrap_or_else(|e| panic!("{name} {locale}: {e}"))
}

/// Renders `name` in `locale` and checks the subject and that the text holds every line of `text`.
fn check(name: &str, locale: &str, data: Value, subject: &str, text: &[&str]) -> Rendered {
    let out = render(&shipped(), name, locale, &data);
    assert_eq!(out.subject, subject, "{name} {locale}");
    for line in text {
        assert!(
            out.text.contains(line),
            "{name} {locale}: no `{line}` in\n{}",
            out.text
        );
    }
    assert!(
        !out.text.contains("\n\n\n"),
        "{name} {locale}: blank lines\n{}",
        out.text
    );
    out
}

fn document() -> Value {
    json!({
        "number": "市纪澄〔2025〕3号",
        "title": "澄清正名通知书",
        "text": "澄清正名通知书\n张三同志（某局局长）：\n关于反映你违规收受礼金的问题……",
        "html": "<article class=\"clearflow-document\"><h1>澄清正名通知书</h1></article>",
    })
}

#[test]
fn mail_to_the_whistleblower_carries_the_case_and_nothing_else() {
    let ack = |forwarded| json!({"case": {"number": "JB-2025-0042", "received_on": "2025-09-30"}, "forwarded": forwarded});
    let out = check(
        "acknowledge-receipt",
        "zh-CN",
        ack(false),
        "您反映的问题已收悉（编号 JB-2025-0042）",
        &[
            "您于2025-09-30实名反映的问题已收悉",
            "我们已依规受理",
            "回执码",
        ],
    );
    assert!(!out.text.contains("移送"));
    assert!(out.html.is_none());
    check(
        "acknowledge-receipt",
        "zh-CN",
        ack(true),
        "您反映的问题已收悉（编号 JB-2025-0042）",
        &["已按管辖权限移送有关机关办理"],
    );
    check(
        "acknowledge-receipt",
        "en",
        ack(true),
        "Your report has been received (case JB-2025-0042)",
        &["forwarded to the competent body"],
    );
    let feedback = json!({"case": {"number": "JB-2025-0042"}, "feedback": {"result": "经核查，反映问题失实，已予澄清。"}});
    check(
        "reporter-feedback",
        "zh-CN",
        feedback.clone(),
        "您反映问题的办理结果（编号 JB-2025-0042）",
        &["经核查，反映问题失实，已予澄清。", "新的证据"],
    );
    check(
        "reporter-feedback",
        "en",
        feedback,
        "The result of your report (case JB-2025-0042)",
        &["new evidence"],
    );
}

#[test]
fn clarification_notice_in_its_three_modes() {
    let data =
        |mode| json!({"mode": mode, "case": {"number": "JB-2025-0042"}, "document": document()});
    let notice = check(
        "clarification-notice",
        "zh-CN",
        data("notice"),
        "澄清正名通知书 市纪澄〔2025〕3号",
        &["张三同志（某局局长）：", "案件编号：JB-2025-0042"],
    );
    assert!(!notice.text.contains("副本"));
    // The document's HTML is the plugin's, already escaped; it is embedded as is.
    let html = notice.html.unwrap();
    assert!(
        html.contains("<article class=\"clearflow-document\"><h1>澄清正名通知书</h1></article>"),
        "{html}"
    );
    check(
        "clarification-notice",
        "zh-CN",
        data("copy"),
        "澄清正名通知书（副本） 市纪澄〔2025〕3号",
        &["副本抄送你部门"],
    );
    check(
        "clarification-notice",
        "zh-CN",
        data("briefing"),
        "澄清正名通知书（通报） 市纪澄〔2025〕3号",
        &["在限定范围内通报"],
    );
    check(
        "clarification-notice",
        "en",
        data("copy"),
        "澄清正名通知书 (copy) 市纪澄〔2025〕3号",
        &["A copy of \"澄清正名通知书\""],
    );
}

#[test]
fn fault_tolerance_decision_names_the_outcome() {
    for (outcome, zh, en) in [
        ("exempted", "予以免责", "exempted"),
        ("mitigated", "从轻或减轻处理", "mitigated"),
        ("not_tolerated", "不予容错", "not tolerated"),
    ] {
        let mut doc = document();
        doc["title"] = json!("容错免责决定书");
        doc["number"] = json!("市纪容〔2025〕1号");
        let data = json!({"case": {"number": "JB-2025-0050"}, "outcome": outcome, "document": doc});
        check(
            "fault-tolerance-decision",
            "zh-CN",
            data.clone(),
            &format!("容错免责决定书 市纪容〔2025〕1号（{zh}）"),
            &[&format!("认定结果：{zh}")],
        );
        check(
            "fault-tolerance-decision",
            "en",
            data,
            &format!("容错免责决定书 市纪容〔2025〕1号 ({en})"),
            &[&format!("Outcome: {en}")],
        );
    }
}

#[test]
fn staff_notices_of_the_flagship_workflows() {
    let filed = json!({
        "case": {"number": "JB-2025-0042"},
        "document": {"number": "市纪澄〔2025〕3号", "title": "澄清正名通知书"},
        "official": {"id": "E-1024", "name": "张三"},
        "entries": [
            {"record": "integrity", "official_id": "E-1024", "summary": "澄清正名：……", "document_ref": "市纪澄〔2025〕3号", "filed_on": "2025-10-20"},
            {"record": "personnel", "official_id": "E-1024", "summary": "澄清正名材料归档：……", "document_ref": "市纪澄〔2025〕3号", "filed_on": "2025-10-20"},
        ],
    });
    check(
        "records-filed",
        "zh-CN",
        filed.clone(),
        "归档通知：澄清正名通知书 市纪澄〔2025〕3号",
        &[
            "1. 廉政档案：澄清正名：……（2025-10-20）",
            "2. 人事档案：澄清正名材料归档：……（2025-10-20）",
            "张三（编号 E-1024）",
        ],
    );
    check(
        "records-filed",
        "en",
        filed,
        "To file: 澄清正名通知书 市纪澄〔2025〕3号",
        &[
            "1. integrity record (廉政档案)",
            "2. personnel record (人事档案)",
        ],
    );
    let visit =
        json!({"case": {"number": "JB-2024-0100"}, "visit": {"number": 2, "on": "2024-09-01"}});
    check(
        "follow-up-visit",
        "zh-CN",
        visit.clone(),
        "回访提醒：案件 JB-2024-0100 第2次回访（2024-09-01）",
        &["第2次回访定于 2024-09-01"],
    );
    check(
        "follow-up-visit",
        "en",
        visit,
        "Follow-up visit (回访) 2 for case JB-2024-0100 on 2024-09-01",
        &["is due on 2024-09-01"],
    );
    let ending = json!({
        "case": {"number": "JB-2024-0100"},
        "official": {"name": "王强", "position": "某局副局长"},
        "sanction": {"label": "党内警告 Party warning", "effective_on": "2024-03-01", "impact_end": "2025-02-28"},
    });
    check(
        "impact-period-ending",
        "zh-CN",
        ending.clone(),
        "处分影响期即将届满：王强（2025-02-28）",
        &["自 2024-03-01 起生效", "处分影响期至 2025-02-28 届满"],
    );
    check(
        "impact-period-ending",
        "en",
        ending,
        "Impact period ending: 王强 (2025-02-28)",
        &["ends with 2025-02-28"],
    );
}

#[test]
fn agenda_and_quarterly_digest_list_every_row() {
    let rows = json!([
        {"case": "JB-2025-0007", "title": "初步核实", "state": "suspected", "due": "2025-03-10"},
        {"case": "JB-2025-0011", "title": "谈话函询", "state": "key", "due": null},
    ]);
    let agenda = json!({"meeting": {"date": "2025-03-03"}, "rows": rows});
    let out = check(
        "joint-review-agenda",
        "zh-CN",
        agenda.clone(),
        "三室会审议题（2025-03-03，共2件）",
        &[
            "1. 案件编号 JB-2025-0007｜初步核实｜疑似｜时限 2025-03-10",
            "2. 案件编号 JB-2025-0011｜谈话函询｜重点\n",
        ],
    );
    assert!(out.html.unwrap().contains("<td>JB-2025-0011</td>"));
    check(
        "joint-review-agenda",
        "en",
        agenda,
        "Joint review (三室会审) agenda, 2025-03-03: 2 cases",
        &["2. Case (案件编号) JB-2025-0011 | 谈话函询 | key (重点)\n"],
    );
    check(
        "joint-review-agenda",
        "zh-CN",
        json!({"meeting": {"date": "2025-04-01"}, "rows": []}),
        "三室会审议题（2025-04-01，共0件）",
        &["本月无议题。"],
    );
    let quarter =
        json!({"quarter": {"label": "2025年第一季度", "office": "第一监督检查室"}, "rows": rows});
    check(
        "quarterly-digest",
        "zh-CN",
        quarter.clone(),
        "第一监督检查室2025年第一季度办结情况（共2件）",
        &["1. 案件编号 JB-2025-0007｜初步核实｜suspected｜办结日期 2025-03-10"],
    );
    check(
        "quarterly-digest",
        "en",
        quarter,
        "第一监督检查室: cases concluded in 2025年第一季度 (2)",
        &["concluded 2025-03-10"],
    );
}
