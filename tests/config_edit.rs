//! The tests' config editor (tests/common/config.rs): an edit names a key
//! the file has, or fails with that name.

mod common;

use common::config::{array, Config};

const TEXT: &str = "\
# A config.
[general]
# The TTL.
ttl = \"100ms\"   # a comment after the value
other = 1

[samplers.tcp]
enabled = true
disable = []
";

#[test]
fn set_changes_the_value_and_keeps_every_other_line() {
    let text = Config::parse("t.toml", TEXT)
        .set("general.ttl", "3s")
        .set("samplers.tcp.disable", array(&["tcp_probe"]))
        .set("samplers.tcp.enabled", false)
        .text();
    assert_eq!(
        text,
        "\
# A config.
[general]
# The TTL.
ttl = \"3s\"   # a comment after the value
other = 1

[samplers.tcp]
enabled = false
disable = [\"tcp_probe\"]
"
    );
}

#[test]
#[should_panic(expected = "t.toml: no key `general.ttll`")]
fn set_on_a_missing_key_names_it() {
    Config::parse("t.toml", TEXT).set("general.ttll", "3s");
}

#[test]
fn add_puts_a_new_key_in_an_existing_table() {
    let text = Config::parse("t.toml", TEXT)
        .add("general.level", "debug")
        .add("samplers.tcp.interval", 5_i64)
        .text();
    assert_eq!(
        text,
        "\
# A config.
[general]
# The TTL.
ttl = \"100ms\"   # a comment after the value
other = 1
level = \"debug\"

[samplers.tcp]
enabled = true
disable = []
interval = 5
"
    );
}

#[test]
#[should_panic(expected = "t.toml: `general.other` is already there (use `set`)")]
fn add_of_a_key_the_file_has_panics() {
    Config::parse("t.toml", TEXT).add("general.other", 2_i64);
}

#[test]
#[should_panic(expected = "t.toml: no table `listen` to add `address` to")]
fn add_to_a_missing_table_panics() {
    Config::parse("t.toml", TEXT).add("listen.address", "127.0.0.1:0");
}

/// The repo's files parse, and their keys the tests edit are there.
#[test]
fn the_repo_configs_have_the_keys_tests_set() {
    let agent = Config::repo("agent");
    assert_eq!(
        agent.get("listen.address").and_then(|v| v.as_str()),
        Some("127.0.0.1:4251")
    );
    assert!(agent.tables("samplers").contains(&"syscall".to_string()));
    let push = Config::repo("push").set("sinks[0].url", "http://127.0.0.1:1/w");
    assert_eq!(
        push.get("sinks[0].url").and_then(|v| v.as_str()),
        Some("http://127.0.0.1:1/w")
    );
}
