//! Folders on disk ↔ [`FileMap`]s: the only file-system code of the workflow commands.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sgde_workflow::FileMap;
use sgde_workflow::folder::{MANIFEST, NODES_DIR};

/// Reads the manifest and everything under `nodes/` (other files, such as a README or `.git`,
/// are not part of the workflow). Hidden files under `nodes/` are editor litter and skipped.
pub fn read_folder(dir: &Path) -> anyhow::Result<FileMap> {
    if !dir.is_dir() {
        bail!("{} is not a directory with a workflow in it", dir.display());
    }
    let mut files = FileMap::new();
    let manifest = dir.join(MANIFEST);
    if manifest.exists() {
        files.insert(MANIFEST.to_owned(), read_text(&manifest)?);
    }
    let nodes = dir.join(NODES_DIR);
    if nodes.is_dir() {
        read_tree(&nodes, NODES_DIR, &mut files)?;
    }
    Ok(files)
}

fn read_tree(dir: &Path, prefix: &str, files: &mut FileMap) -> anyhow::Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            bail!("{}: file names must be UTF-8", entry.path().display());
        };
        if name.starts_with('.') {
            continue;
        }
        let relative = format!("{prefix}/{name}");
        let path = entry.path();
        if path.is_dir() {
            read_tree(&path, &relative, files)?;
        } else {
            files.insert(relative, read_text(&path)?);
        }
    }
    Ok(())
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{}: not UTF-8 text", path.display()))
}

/// Writes `files` into `dir`. `nodes/` is replaced as a whole, so that a node removed or renamed
/// since the last export loses its files (git then shows the deletion); nothing else in `dir`
/// is touched.
pub fn write_folder(dir: &Path, files: &FileMap) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let nodes = dir.join(NODES_DIR);
    if nodes.exists() {
        std::fs::remove_dir_all(&nodes).with_context(|| format!("cannot replace {}", nodes.display()))?;
    }
    for (relative, text) in files {
        let path: PathBuf = relative.split('/').fold(dir.to_path_buf(), |p, part| p.join(part));
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
