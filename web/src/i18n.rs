//! Message catalogues (one embedded TOML file per locale) and locale negotiation.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Serialize;

/// A supported UI language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Locale {
    /// Simplified Chinese, the default.
    #[serde(rename = "zh-CN")]
    ZhCn,
    /// English.
    #[serde(rename = "en")]
    En,
}

impl Locale {
    /// Every supported locale, default first.
    pub const ALL: [Locale; 2] = [Locale::ZhCn, Locale::En];

    /// The BCP 47 tag, as used in `lang` attributes.
    pub fn tag(self) -> &'static str {
        match self {
            Locale::ZhCn => "zh-CN",
            Locale::En => "en",
        }
    }

    /// The locale for a tag such as `zh`, `zh-Hans-CN` or `en-GB`, if supported.
    pub fn from_tag(tag: &str) -> Option<Locale> {
        let primary = tag.split(['-', '_']).next()?.trim().to_ascii_lowercase();
        match primary.as_str() {
            "zh" => Some(Locale::ZhCn),
            "en" => Some(Locale::En),
            _ => None,
        }
    }

    /// Picks the locale: the user's saved choice, else the best of `Accept-Language`,
    /// else zh-CN.
    pub fn negotiate(user: Option<&str>, accept_language: Option<&str>) -> Locale {
        user.and_then(Locale::from_tag)
            .or_else(|| accept_language.and_then(best_accepted))
            .unwrap_or(Locale::ZhCn)
    }

    /// The message for `key`, or the key itself when missing (a test keeps that from
    /// happening in shipped templates).
    pub fn t(self, key: &str) -> &str {
        catalogue(self).get(key).map_or(key, String::as_str)
    }

    /// Whether `key` exists in this locale's catalogue.
    pub fn has(self, key: &str) -> bool {
        catalogue(self).contains_key(key)
    }
}

/// The highest-weighted supported language of an `Accept-Language` header.
fn best_accepted(header: &str) -> Option<Locale> {
    let mut best: Option<(f32, usize, Locale)> = None;
    for (i, item) in header.split(',').enumerate() {
        let mut parts = item.split(';');
        let Some(locale) = parts.next().and_then(Locale::from_tag) else {
            continue;
        };
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .find_map(|q| q.trim().parse::<f32>().ok())
            .unwrap_or(1.0);
        if !(q > 0.0 && q <= 1.0) {
            continue;
        }
        // Equal weights keep the header's order.
        if best.is_none_or(|(bq, bi, _)| q > bq || (q == bq && i < bi)) {
            best = Some((q, i, locale));
        }
    }
    best.map(|(_, _, l)| l)
}

/// The flattened catalogue of a locale: `section.key` → message.
pub fn catalogue(locale: Locale) -> &'static BTreeMap<String, String> {
    static ZH: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    static EN: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    match locale {
        Locale::ZhCn => ZH.get_or_init(|| parse(include_str!("../i18n/zh-CN.toml"))),
        Locale::En => EN.get_or_init(|| parse(include_str!("../i18n/en.toml"))),
    }
}

fn parse(src: &str) -> BTreeMap<String, String> {
    let table: toml::Table = toml::from_str(src).expect("embedded catalogue is valid TOML");
    let mut out = BTreeMap::new();
    flatten("", &table, &mut out);
    out
}

fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => flatten(&key, t, out),
            toml::Value::String(s) => {
                out.insert(key, s.clone());
            }
            other => panic!("catalogue entry {key} is not a string: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogues_have_the_same_keys() {
        let zh: Vec<_> = catalogue(Locale::ZhCn).keys().collect();
        let en: Vec<_> = catalogue(Locale::En).keys().collect();
        assert_eq!(zh, en);
        assert!(!zh.is_empty());
    }

    #[test]
    fn every_history_kind_has_words() {
        for kind in clearflow_core::HISTORY_KINDS {
            let key = format!("history.{kind}");
            assert!(Locale::ZhCn.has(&key), "zh-CN has no `{key}`");
            assert!(Locale::En.has(&key), "en has no `{key}`");
        }
    }

    #[test]
    fn negotiation() {
        let check = |user, accept, want: Locale| {
            assert_eq!(Locale::negotiate(user, accept), want, "{user:?} {accept:?}")
        };
        check(None, None, Locale::ZhCn);
        check(Some("en"), Some("zh-CN"), Locale::En);
        check(Some("fr"), Some("en-GB,en;q=0.9"), Locale::En);
        check(None, Some("fr-FR, en;q=0.5, zh;q=0.8"), Locale::ZhCn);
        check(None, Some("zh;q=0.1, en;q=0.2"), Locale::En);
        check(None, Some("en;q=0, zh-TW"), Locale::ZhCn);
        check(None, Some("de, fr"), Locale::ZhCn);
        check(None, Some("en, zh"), Locale::En);
        check(None, Some("garbage;;q=x"), Locale::ZhCn);
    }

    #[test]
    fn lookup() {
        assert_eq!(Locale::ZhCn.t("wb.submit"), "提交");
        assert_eq!(Locale::En.t("wb.submit"), "Submit");
        assert_eq!(Locale::En.t("no.such.key"), "no.such.key");
    }
}
