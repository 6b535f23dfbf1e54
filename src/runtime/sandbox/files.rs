//! Landlock: the files a sandboxed agent may open.

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, CompatLevel, Compatible, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use std::path::PathBuf;

/// The newest Landlock ABI this code asks for; older kernels give what they have.
const ABI_WANTED: ABI = ABI::V6;

/// Reads beneath `read_paths` only, and nothing written anywhere; as far as the kernel's
/// Landlock goes, no TCP `bind`/`connect` and no signal or abstract Unix socket out of the
/// sandbox either. A path that does not exist is skipped (it can hold no document).
/// Fails when the kernel enforces nothing (no Landlock, or it is disabled).
pub(super) fn restrict(read_paths: &[PathBuf]) -> Result<(), String> {
    let abi = ABI_WANTED;
    let err = |e: landlock::RulesetError| format!("landlock: {e}");
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))
        .map_err(err)?
        .handle_access(AccessNet::from_all(abi))
        .map_err(err)?
        .scope(Scope::from_all(abi))
        .map_err(err)?
        .create()
        .map_err(err)?;
    let existing: Vec<&PathBuf> = read_paths.iter().filter(|p| p.exists()).collect();
    ruleset = ruleset
        .add_rules(path_beneath_rules(existing, AccessFs::from_read(abi)))
        .map_err(err)?;
    let status = ruleset.restrict_self().map_err(err)?;
    match status.ruleset {
        RulesetStatus::NotEnforced => Err("landlock: not enforced by this kernel".into()),
        _ => Ok(()),
    }
}
