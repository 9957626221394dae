//! Keeps the README's metric catalog and config/agent.toml in step with
//! what the binary registers. On a mismatch the test prints the table to
//! paste into the README.

use crate::agent::sampler::SAMPLERS;
use crate::registry::{families, Kind, Unit};

const README: &str = include_str!("../README.md");
const AGENT_TOML: &str = include_str!("../config/agent.toml");

/// The catalog as the README must show it, one row per family.
fn catalog() -> String {
    let mut out = String::from(
        "| metric | type | unit | labels | sampler | source | description |\n|---|---|---|---|---|---|---|\n",
    );
    for f in families().iter().filter(|f| f.desc.sampler != "test") {
        let d = &f.desc;
        let unit = match d.unit {
            Unit::Nanoseconds => "seconds",
            Unit::Milli => "",
            u => u.as_str(),
        };
        let unit = if d.unit == Unit::Count { "" } else { unit };
        let labels = d.labels.join(", ");
        let kind = match d.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        out.push_str(&format!(
            "| `{}` | {kind} | {unit} | {labels} | {} | {} | {} |\n",
            d.prom_name(),
            d.sampler,
            d.source,
            d.help
        ));
    }
    out
}

#[test]
fn readme_catalog_matches_the_registry() {
    let start = README
        .find("<!-- catalog:start -->\n")
        .expect("README catalog start marker")
        + 23;
    let end = README
        .find("<!-- catalog:end -->")
        .expect("README catalog end marker");
    let expected = catalog();
    assert!(
        README[start..end] == expected,
        "README metric catalog is out of date; replace it with:\n\n{expected}"
    );
}

#[test]
fn agent_toml_documents_every_sampler() {
    for spec in SAMPLERS {
        let header = format!("[samplers.{}]", spec.name);
        assert!(
            AGENT_TOML.contains(&header),
            "config/agent.toml lacks {header}"
        );
    }
}
