//! The TXT format: one server name per line.

use super::Raw;

pub(super) fn parse_txt(text: &str) -> Vec<Raw> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let t = l.trim();
            (!t.is_empty() && !t.starts_with('#')).then(|| Raw {
                line: i + 1,
                name: t.to_string(),
                address: None,
                port: None,
                role: None,
                site: None,
                fqdn: None,
            })
        })
        .collect()
}
