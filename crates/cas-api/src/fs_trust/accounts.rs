//! Users and groups by name or number, read from `/etc/passwd` and `/etc/group` (no NSS: the
//! daemon should not depend on libc's lookup machinery), and the service account: the user the
//! packaged unit runs the daemon as.

/// The unit's `User=` (systemd/cas-certd.service). `CAS_CERTD_USER` names another account, for
/// a unit edited to run as someone else (and for tests, which cannot add system users).
pub const SERVICE_USER: &str = "cas-certd";

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("read {db}: {source}")]
    Read {
        db: &'static str,
        source: std::io::Error,
    },
    #[error("{db} has no entry named {name:?}")]
    Unknown { db: &'static str, name: String },
}

/// A user by name or number.
pub fn uid(spec: &str) -> Result<u32, AccountError> {
    id(spec, "/etc/passwd")
}

/// A group by name or number.
pub fn gid(spec: &str) -> Result<u32, AccountError> {
    id(spec, "/etc/group")
}

fn id(spec: &str, db: &'static str) -> Result<u32, AccountError> {
    if let Ok(n) = spec.parse::<u32>() {
        return Ok(n);
    }
    let text = std::fs::read_to_string(db).map_err(|source| AccountError::Read { db, source })?;
    // Both files are `name:x:id:…`: the id is the third field.
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&spec))
        .and_then(|f| f.get(2).and_then(|v| v.parse().ok()))
        .ok_or_else(|| AccountError::Unknown {
            db,
            name: spec.to_string(),
        })
}

/// The service account's uid, when that account exists on this machine.
pub fn service_uid() -> Option<u32> {
    let name = std::env::var("CAS_CERTD_USER").unwrap_or_else(|_| SERVICE_USER.to_string());
    uid(&name).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_by_number_and_name() {
        assert_eq!(uid("0").unwrap(), 0);
        assert_eq!(uid("root").unwrap(), 0);
        assert_eq!(gid("root").unwrap(), 0);
        assert_eq!(uid("4242").unwrap(), 4242);
        assert!(matches!(
            uid("nobody-such-user"),
            Err(AccountError::Unknown { .. })
        ));
    }
}
