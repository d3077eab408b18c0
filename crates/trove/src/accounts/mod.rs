//! Account use cases shared by the admin CLI and the API: tokens, organization members, web
//! sessions, the audit trail. Each writes its audit event itself, so no path can skip it.

pub mod orgs;
pub mod profile;
pub mod sessions;
pub mod signup;
pub mod tokens;
pub mod usage;

use trove_db::{Db, NewAuditEvent};

/// Records a security event. A failure is logged, never returned: the change it describes
/// already happened.
pub async fn audit(
    db: &Db,
    actor: &str,
    action: &str,
    namespace: Option<&str>,
    target: Option<&str>,
    detail: Option<&str>,
) {
    let event = NewAuditEvent {
        actor,
        action,
        namespace,
        target,
        detail,
    };
    if let Err(e) = db.audit(event).await {
        tracing::error!(error = %e, action, "could not write an audit event");
    }
}
