//! Organization membership changes, with their audit events and the rule that an
//! organization keeps at least one admin.

use anyhow::Context;
use trove_db::{Db, Org, OrgRole, User};

pub async fn find_org(db: &Db, name: &str) -> anyhow::Result<Org> {
    db.org_by_name(name)
        .await?
        .with_context(|| format!("no organization named {name:?}"))
}

pub async fn set_member(
    db: &Db,
    actor: &str,
    org: &Org,
    user: &User,
    role: OrgRole,
) -> anyhow::Result<()> {
    let current = db
        .org_members(org.id)
        .await?
        .into_iter()
        .find(|(u, _)| u.id == user.id)
        .map(|(_, r)| r);
    anyhow::ensure!(
        !(current == Some(OrgRole::Admin)
            && role != OrgRole::Admin
            && db.count_org_admins(org.id).await? <= 1),
        "{} is the last admin of {}: add another admin first",
        user.name,
        org.name
    );
    db.set_org_member(org.id, user.id, role).await?;
    let action = if current.is_some() {
        "org.member.role"
    } else {
        "org.member.add"
    };
    super::audit(
        db,
        actor,
        action,
        Some(&org.name),
        Some(&user.name),
        Some(role.as_str()),
    )
    .await;
    Ok(())
}

pub async fn remove_member(db: &Db, actor: &str, org: &Org, user: &User) -> anyhow::Result<bool> {
    let is_admin = db
        .org_members(org.id)
        .await?
        .iter()
        .any(|(u, r)| u.id == user.id && *r == OrgRole::Admin);
    anyhow::ensure!(
        !(is_admin && db.count_org_admins(org.id).await? <= 1),
        "{} is the last admin of {}: add another admin first",
        user.name,
        org.name
    );
    let done = db.remove_org_member(org.id, user.id).await?;
    if done {
        super::audit(
            db,
            actor,
            "org.member.remove",
            Some(&org.name),
            Some(&user.name),
            None,
        )
        .await;
    }
    Ok(done)
}
