//! The versions of `<output_dir>/<name>` other than the live one, for the rebuild: a swap cut
//! short (a crash after a version was written, before `live` named it) leaves an issued, paid
//! set there that nothing else names. Reads only, through `O_NOFOLLOW` fds, with the manifest
//! trust rules of the live set (and the version directory itself must be trusted too).

use std::path::Path;

use super::dirfd::Dir;
use super::files::{read_version, version_of};
use super::manifest::{is_version_name, manifest_in, LiveManifest};
use super::{DeployError, PemSet};
use cas_api::secret::Secret;

/// One version directory that `live` does not name.
#[derive(Debug)]
pub struct Version {
    /// Its name under `versions/`.
    pub name: String,
    pub manifest: LiveManifest,
    /// Its files, unchecked; read only when the manifest is trusted (`None` otherwise, or
    /// when they are not the layout [`super::install`] writes).
    pub set: Option<PemSet>,
}

/// Every complete version of `<output_dir>/<name>` but the live one (named as
/// [`super::install`] names them; temporaries skipped), newest name first; empty when there
/// is no such directory.
pub fn others(output_dir: &Path, name: &str) -> Result<Vec<Version>, DeployError> {
    if crate::config::domain::safe_name(name).is_err() {
        return Ok(Vec::new());
    }
    let Some(root) = Dir::open_root(output_dir)? else {
        return Ok(Vec::new());
    };
    let Some(dir) = root.open_quiet(name)? else {
        return Ok(Vec::new());
    };
    let Some(versions) = dir.open_quiet("versions")? else {
        return Ok(Vec::new());
    };
    let live = dir
        .read_link("live")
        .and_then(|t| version_of(&t).map(str::to_string));
    let mut names: Vec<String> = versions
        .names()?
        .into_iter()
        .filter_map(|n| n.into_string().ok())
        .filter(|n| is_version_name(n) && Some(n) != live.as_ref())
        .collect();
    // Names start with a UTC timestamp: the lexical order is the age order.
    names.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = Vec::with_capacity(names.len());
    for v in names {
        let Some(vd) = versions.open_quiet(&v)? else {
            continue;
        };
        let manifest = match vd.check_trusted() {
            Err(e) => LiveManifest::Refused(e.to_string()),
            Ok(()) => manifest_in(&dir, &versions, &vd)?,
        };
        let set = match manifest {
            LiveManifest::Trusted(_) => read_version(&vd)?.map(|[cert, chain, _, key]| PemSet {
                cert_pem: cert,
                chain_pem: chain,
                key_pem: Secret::new(key),
            }),
            _ => None,
        };
        out.push(Version {
            name: v,
            manifest,
            set,
        });
    }
    Ok(out)
}
