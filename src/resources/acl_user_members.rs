//! A replication group's members as the places an ACL user lives: every data node of the
//! primary service and its read replicas, the user set on each (the first one that answers
//! checking the rules), compared on each for drift, and brought to a member that just started.

use std::time::Duration;

use super::{Context, error, group_view, nodes, records};
use crate::runtime::{AclUserRecord, ServiceRecord};
use crate::tfplug::{AttrPath, Diagnostic, Diagnostics};
use crate::valkey::ValkeyError;
use crate::valkey::acl::{self, DEFAULT_USER};

/// How long one member may take to answer before it counts as not running.
const MEMBER_TIMEOUT: Duration = Duration::from_secs(2);

/// One data node of the group: which member record it belongs to, and its name.
pub struct Member {
    pub record: ServiceRecord,
    pub index: usize,
}

impl Member {
    pub fn name(&self) -> String {
        nodes::node_id(&self.record, self.index).to_string()
    }

    pub async fn connect(&self) -> Result<crate::valkey::NodeClient, ValkeyError> {
        let at = self
            .record
            .node_endpoint(self.index)
            .unwrap_or_else(|| crate::runtime::Endpoint::new("", 0));
        group_view::connect_member(&self.record, &at, MEMBER_TIMEOUT).await
    }
}

/// Every data node of the group whose primary service is `primary`: its own and its read
/// replicas', but those being destroyed.
pub async fn members(ctx: &Context, primary: &ServiceRecord) -> Result<Vec<Member>, Diagnostics> {
    let mut records = vec![primary.clone()];
    records.extend(records::replica_records(ctx, &primary.name).await?);
    // Members this process is destroying right now need no user.
    let leaving = ctx.leaving.lock().map(|set| set.clone()).unwrap_or_default();
    records.retain(|r| !leaving.contains(&r.name));
    Ok(records.iter().flat_map(nodes_of).collect())
}

/// Every data node of one member record.
fn nodes_of(record: &ServiceRecord) -> Vec<Member> {
    record
        .nodes
        .iter()
        .map(|n| Member {
            record: record.clone(),
            index: n.index,
        })
        .collect()
}

/// The attribute a rule Valkey refused belongs to, from the rule its message quotes.
fn refused_attribute(message: &str) -> &'static str {
    let quoted = message.split('\'').nth(1).unwrap_or_default();
    match quoted.chars().next() {
        Some('~' | '%') => "keys",
        Some('&') => "channels",
        _ if quoted.starts_with("+@") || quoted.starts_with("-@") => "categories",
        _ => "commands",
    }
}

/// Brings a member that has just started (a new read replica) up to its group's users and
/// password: a user or a password change applied while the member was starting may have
/// missed it (its config file was written before, its node answered after).
pub async fn catch_up(ctx: &Context, record: &mut ServiceRecord) -> Result<(), Diagnostics> {
    let Some(primary) = records::group_primary_record(ctx, record).await else {
        return Ok(());
    };
    if primary.name == record.name {
        return Ok(());
    }
    let members = nodes_of(record);
    if primary.password != record.password {
        let change = vec![
            "SETUSER".to_string(),
            DEFAULT_USER.to_string(),
            "resetpass".to_string(),
            format!(">{}", primary.password),
        ];
        set_everywhere(&members, &change, DEFAULT_USER).await?;
        record.password = primary.password.clone();
        record.password_write_only = primary.password_write_only;
        records::save(ctx, record).await?;
    }
    for mut member in members {
        member.record.password = record.password.clone();
        let Ok(mut client) = member.connect().await else {
            continue;
        };
        let listed = client.acl_list().await.unwrap_or_default();
        for user in primary.acl_users.iter().filter(|u| u.username != DEFAULT_USER) {
            if acl::listed_line(&listed, &user.username) != Some(user.listed.as_str()) {
                let args = acl::setuser_args(&user.username, &user.password_hash, &user.rules);
                client
                    .acl_change(&args)
                    .await
                    .map_err(|e| error("Could not set a user on a new member", e))?;
            }
        }
    }
    Ok(())
}

/// Runs ACL `args` on every member that answers, the first one first: when it refuses the
/// rules, no other member is touched. Members that do not answer are skipped (they read the
/// user from their config file when the provider starts them); the first that answers gives
/// the ACL LIST line of `username`.
pub async fn set_everywhere(members: &[Member], args: &[String], username: &str) -> Result<String, Diagnostics> {
    let mut listed = String::new();
    for member in members {
        let Ok(mut client) = member.connect().await else {
            tracing::info!(member = %member.name(), "member does not answer; it gets the user when started");
            continue;
        };
        match client.acl_change(args).await {
            Ok(()) => {}
            // The member went away under the request (a replica being destroyed meanwhile,
            // say): like one that does not answer.
            Err(e) if !e.is_refusal() => {
                tracing::info!(member = %member.name(), error = %e, "member went away during an ACL change");
                continue;
            }
            Err(e) if args.first().map(String::as_str) == Some("SETUSER") && username != DEFAULT_USER => {
                let attribute = refused_attribute(&e.to_string());
                return Err(Diagnostic::error(
                    "Valkey refused the user's rules",
                    format!("{}: {e}. Fix {attribute} and apply again.", member.name()),
                )
                .at(AttrPath::root(attribute))
                .into());
            }
            Err(e) => {
                return Err(error(
                    "Could not change a user on a member",
                    format!("{}: {e}", member.name()),
                ));
            }
        }
        if listed.is_empty()
            && let Ok(lines) = client.acl_list().await
        {
            listed = acl::listed_line(&lines, username).unwrap_or_default().to_string();
        }
    }
    Ok(listed)
}

/// How the members have the user, against how it was set: None when every member that
/// answers lists it as set, else which member has it otherwise and what it has (no password).
pub async fn drift(members: &[Member], entry: &AclUserRecord) -> Option<String> {
    if entry.listed.is_empty() {
        return None;
    }
    for member in members {
        let Ok(mut client) = member.connect().await else {
            continue;
        };
        let Ok(lines) = client.acl_list().await else { continue };
        match acl::listed_line(&lines, &entry.username) {
            None => return Some(format!("missing on {} (deleted outside Terraform)", member.name())),
            Some(line) if line != entry.listed => {
                let (now, set) = (acl::without_passwords(line), acl::without_passwords(&entry.listed));
                let what = if now == set {
                    "password changed outside Terraform".to_string()
                } else {
                    now
                };
                return Some(format!("differs on {}: {what}", member.name()));
            }
            Some(_) => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_rule_is_reported_at_its_attribute() {
        let m = |rule: &str| format!("ERR Error in ACL SETUSER modifier '{rule}': Unknown command or category name");
        assert_eq!(refused_attribute(&m("+@nosuch")), "categories");
        assert_eq!(refused_attribute(&m("+nosuch")), "commands");
        assert_eq!(refused_attribute(&m("%X~k")), "keys");
        assert_eq!(refused_attribute(&m("&c")), "channels");
    }
}
