//! Valkey ACL users as the provider declares them: checking what a user writes, the rule text
//! ACL SETUSER and config files take, and how a node's ACL LIST line compares. Pure.

use sha2::{Digest, Sha256};

use super::config_file::{REPLICATION_USER, SENTINEL_USER};

/// Valkey's command categories (`ACL CAT`), without the `@`; `all` stands for every one.
pub const CATEGORIES: &[&str] = &[
    "all",
    "keyspace",
    "read",
    "write",
    "set",
    "sortedset",
    "list",
    "hash",
    "string",
    "bitmap",
    "hyperloglog",
    "geo",
    "stream",
    "pubsub",
    "admin",
    "fast",
    "slow",
    "blocking",
    "dangerous",
    "connection",
    "transaction",
    "scripting",
];

/// Users the provider runs the group with: no configuration may take them over.
pub const RESERVED_USERS: &[&str] = &[REPLICATION_USER, SENTINEL_USER];

/// The user clients get without AUTH, and the one the provider administers nodes as.
pub const DEFAULT_USER: &str = "default";

/// What an ACL user may do, in the order Valkey applies it: key and channel patterns, then
/// categories, then single commands (a later rule overrides an earlier one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessRules {
    pub categories: Vec<String>,
    pub commands: Vec<String>,
    pub keys: Vec<String>,
    pub channels: Vec<String>,
}

impl AccessRules {
    /// The rules as ACL SETUSER and a config file's `user` line take them, after the password.
    pub fn render(&self) -> String {
        let keys = self.keys.iter().map(|k| key_rule(k));
        let channels = self.channels.iter().map(|c| format!("&{c}"));
        let rest = self.categories.iter().chain(&self.commands).cloned();
        keys.chain(channels).chain(rest).collect::<Vec<_>>().join(" ")
    }

    /// Every rule's problem, with the attribute it belongs to and its position.
    pub fn problems(&self) -> Vec<(&'static str, usize, String)> {
        let mut out = Vec::new();
        let mut check = |attr: &'static str, values: &[String], f: fn(&str) -> Result<(), String>| {
            for (i, v) in values.iter().enumerate() {
                if let Err(e) = f(v) {
                    out.push((attr, i, e));
                }
            }
        };
        check("categories", &self.categories, check_category);
        check("commands", &self.commands, check_command);
        check("keys", &self.keys, check_pattern);
        check("channels", &self.channels, check_pattern);
        out
    }

    /// The rules `render` made, read back.
    pub fn parse(rendered: &str) -> AccessRules {
        let mut rules = AccessRules::default();
        for word in rendered.split_whitespace() {
            let word = word.to_string();
            if let Some(key) = word.strip_prefix('~') {
                rules.keys.push(key.to_string());
            } else if word.starts_with('%') {
                rules.keys.push(word);
            } else if let Some(channel) = word.strip_prefix('&') {
                rules.channels.push(channel.to_string());
            } else if word.starts_with("+@") || word.starts_with("-@") {
                rules.categories.push(word);
            } else {
                rules.commands.push(word);
            }
        }
        rules
    }

    pub fn is_empty(&self) -> bool {
        self.categories.is_empty() && self.commands.is_empty() && self.keys.is_empty() && self.channels.is_empty()
    }
}

/// A key pattern as a rule: `~pattern`, or as written when it already says which access it
/// grants (`%R~pattern`, `%W~pattern`, `%RW~pattern`).
fn key_rule(pattern: &str) -> String {
    if pattern.starts_with('%') {
        pattern.to_string()
    } else {
        format!("~{pattern}")
    }
}

/// A user name Valkey accepts and the provider does not run the group with.
pub fn check_username(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err(format!("{name:?} must be 1 to 64 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.@".contains(*c)))
    {
        return Err(format!(
            "{name:?} has {c:?}; use letters, digits, '-', '_', '.' and '@'"
        ));
    }
    if RESERVED_USERS.contains(&name) {
        return Err(format!(
            "{name:?} is the user the provider's replication or Sentinels run as; choose another name"
        ));
    }
    Ok(())
}

/// `+@category` or `-@category`, a category Valkey has.
pub fn check_category(rule: &str) -> Result<(), String> {
    let name = rule
        .strip_prefix("+@")
        .or_else(|| rule.strip_prefix("-@"))
        .ok_or_else(|| format!("{rule:?} must start with +@ (allow) or -@ (deny), such as \"+@read\""))?;
    if CATEGORIES.contains(&name) {
        Ok(())
    } else {
        Err(format!(
            "{rule:?} names no category Valkey has; use one of {}",
            CATEGORIES.join(", ")
        ))
    }
}

/// `+command`, `-command` or `+command|subcommand`: a command name, not a category.
pub fn check_command(rule: &str) -> Result<(), String> {
    let name = rule
        .strip_prefix('+')
        .or_else(|| rule.strip_prefix('-'))
        .ok_or_else(|| format!("{rule:?} must start with + (allow) or - (deny), such as \"+get\""))?;
    if name.starts_with('@') {
        return Err(format!("{rule:?} is a category; put it in categories"));
    }
    let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    match name.split_once('|') {
        None if word(name) => Ok(()),
        Some((command, sub)) if word(command) && word(sub) => Ok(()),
        _ => Err(format!(
            "{rule:?} is not a command name; write +NAME, -NAME or +NAME|SUBCOMMAND"
        )),
    }
}

/// A key or channel pattern: not empty, no whitespace (ACL rules are space-separated).
pub fn check_pattern(pattern: &str) -> Result<(), String> {
    if pattern.is_empty() {
        return Err("a pattern cannot be empty; use \"*\" for every name".into());
    }
    if pattern.chars().any(char::is_whitespace) {
        return Err(format!("{pattern:?} has whitespace, which ACL rules cannot hold"));
    }
    Ok(())
}

/// The SHA-256 of a password, hex, as ACL rules take it (`#HASH`): nodes and records keep
/// this, never the password.
pub fn password_hash(password: &str) -> String {
    Sha256::digest(password.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The arguments of ACL SETUSER that make user `name` exactly this: whatever it had before
/// is reset first.
pub fn setuser_args(name: &str, password_hash: &str, rules: &str) -> Vec<String> {
    let mut args = vec![
        "SETUSER".to_string(),
        name.to_string(),
        "reset".to_string(),
        "on".to_string(),
        format!("#{password_hash}"),
    ];
    args.extend(rules.split_whitespace().map(str::to_string));
    args
}

/// A config file's `user` line for the same user.
pub fn config_line(name: &str, password_hash: &str, rules: &str) -> String {
    format!("user {name} on #{password_hash} {rules}")
        .trim_end()
        .to_string()
}

/// An ACL LIST line without its password hashes: what may be shown to a user.
pub fn without_passwords(line: &str) -> String {
    line.split_whitespace()
        .filter(|w| !w.starts_with('#') && !w.starts_with('>'))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The line of user `name` in an ACL LIST answer.
pub fn listed_line<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("user {name} ");
    lines.iter().find(|l| l.starts_with(&prefix)).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> AccessRules {
        AccessRules {
            categories: vec!["-@all".into(), "+@read".into()],
            commands: vec!["+set".into(), "-config|set".into()],
            keys: vec!["app:*".into(), "%R~shared:*".into()],
            channels: vec!["events:*".into()],
        }
    }

    #[test]
    fn rules_render_patterns_then_categories_then_commands() {
        assert_eq!(
            rules().render(),
            "~app:* %R~shared:* &events:* -@all +@read +set -config|set"
        );
        assert!(rules().problems().is_empty());
        assert_eq!(AccessRules::parse(&rules().render()), rules());
        assert_eq!(AccessRules::default().render(), "");
        assert_eq!(config_line("app", "ab", ""), "user app on #ab");
        let args = setuser_args("app", "ab", "~k +get");
        assert_eq!(args, ["SETUSER", "app", "reset", "on", "#ab", "~k", "+get"]);
    }

    #[test]
    fn each_bad_rule_is_named_with_its_attribute_and_position() {
        let bad = AccessRules {
            categories: vec!["+@read".into(), "read".into(), "+@nosuch".into()],
            commands: vec!["get".into(), "+@read".into(), "+client|kill".into(), "+a b".into()],
            keys: vec!["".into(), "a b".into()],
            channels: vec!["*".into()],
        };
        let found: Vec<(&str, usize)> = bad.problems().iter().map(|(a, i, _)| (*a, *i)).collect();
        assert_eq!(
            found,
            [
                ("categories", 1),
                ("categories", 2),
                ("commands", 0),
                ("commands", 1),
                ("commands", 3),
                ("keys", 0),
                ("keys", 1)
            ]
        );
    }

    #[test]
    fn usernames_of_the_providers_own_users_are_refused() {
        assert!(check_username("app-1").is_ok());
        assert!(check_username("default").is_ok());
        for bad in ["", "replicator", "sentinel", "a b", &"x".repeat(65)] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_hash_as_valkey_does_and_never_show() {
        // ACL GETUSER of a user given >pw shows this hash.
        assert_eq!(
            password_hash("pw"),
            "30c952fab122c3f9759f02a6d95c3758b246b4fee239957b2d4fee46e26170c4"
        );
        let line = "user app on #30c9 >x ~app:* -@all +get";
        assert_eq!(without_passwords(line), "user app on ~app:* -@all +get");
        let lines = vec!["user a on".to_string(), "user app on #1".to_string()];
        assert_eq!(listed_line(&lines, "app"), Some("user app on #1"));
        assert_eq!(listed_line(&lines, "ap"), None);
    }
}
