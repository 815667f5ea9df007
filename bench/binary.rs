//! The `gt` binaries a benchmark measures: the one cargo built for it, or
//! others named on the command line (an older commit's, say).

use std::path::PathBuf;

use color_eyre::eyre::{bail, Result, WrapErr};

/// A `gt` binary to measure.
pub struct GtBin {
    pub label: String,
    pub path: PathBuf,
    /// The one cargo built with this bench (so of this commit).
    pub built: bool,
}

/// The `gt` binary cargo built for this bench (same profile, same commit).
pub fn find_gt() -> Result<PathBuf> {
    let gt = PathBuf::from(crate::command::GT);
    if !gt.is_file() {
        bail!(
            "{} not found: run the bench through cargo (`cargo bench --bench NAME`), which builds it",
            gt.display()
        );
    }
    Ok(gt)
}

/// The binaries `--gt` names (`[LABEL=]PATH`, `built` as PATH for the one
/// cargo built), else the one cargo built.
pub fn from_specs(specs: &[String]) -> Result<Vec<GtBin>> {
    let built = |label: Option<&str>| -> Result<GtBin> {
        Ok(GtBin {
            label: label.map_or_else(|| format!("gt {}", crate::procfs::commit()), str::to_string),
            path: find_gt()?,
            built: true,
        })
    };
    if specs.is_empty() {
        return Ok(vec![built(None)?]);
    }
    let mut bins = Vec::new();
    for spec in specs {
        // LABEL=PATH, unless what is before the `=` looks like a path.
        let (label, path) = match spec.split_once('=') {
            Some((label, path)) if !label.contains('/') && !label.is_empty() => (Some(label), path),
            _ => (None, spec.as_str()),
        };
        if path == "built" {
            bins.push(built(label)?);
            continue;
        }
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("--gt {spec}: {} is not a file", path.display());
        }
        let path = path
            .canonicalize()
            .wrap_err_with(|| format!("--gt {spec}"))?;
        bins.push(GtBin {
            label: label.map_or_else(|| path.display().to_string(), str::to_string),
            path,
            built: false,
        });
    }
    Ok(bins)
}
