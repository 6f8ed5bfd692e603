//! Workflows as folders: a version written as files that review well in git, and read back.
//!
//! A pull request that changes a compiled workflow should show *which prompt* or *which line of
//! Python* changed, not one escaped string in a JSON blob. So a folder holds:
//!
//! - `workflow.json`, the manifest: the folder format, the workflow name, the spec with every
//!   long text replaced by a reference to its file (`prompt_file`, `system_file`, `code_file`),
//!   and the provenance of the content (hash, source, parent, compile job, scores);
//! - `nodes/<id>.system.txt`, `nodes/<id>.prompt.txt` and `nodes/<id>.py` for each node, the
//!   body nodes of a consensus node under `nodes/<consensus id>/`.
//!
//! The mapping is deterministic: the manifest's keys are sorted and it is printed the same way
//! every time, and text files hold the text verbatim (no trailing newline added), so exporting
//! the same content gives the same bytes wherever it is stored. Nothing here touches the file
//! system: folders are [`FileMap`]s, which keeps the format testable and the I/O in the CLI.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::spec::WorkflowSpec;
use crate::validate::escape_pointer_token;

/// The manifest's file name at the root of a folder.
pub const MANIFEST: &str = "workflow.json";
/// The directory holding the text files.
pub const NODES_DIR: &str = "nodes";
/// The `format` every manifest of this version carries.
pub const FOLDER_FORMAT: &str = "sgde.folder/v1";

/// The text fields that get a file of their own, and the file suffix of each.
const TEXT_FIELDS: [(&str, &str); 3] =
    [("system", ".system.txt"), ("prompt", ".prompt.txt"), ("code", ".py")];

/// A folder's files by `/`-separated relative path.
pub type FileMap = BTreeMap<String, String>;

/// Where a version's content came from. Instance-independent where it can be (the parent is
/// named by its content hash, not by an id), carried verbatim where it cannot (the compile job
/// ran on one instance), so that the block survives export → apply elsewhere → export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    /// `sha256:` content hash of the spec this block describes.
    pub content_hash: String,
    /// How the content was made: `manual`, `compile` or `apply` (edit operations).
    pub source: String,
    /// Content hash of the version it derives from.
    #[serde(default)]
    pub parent: Option<String>,
    /// Id of the compile job that produced it, on the instance where it was compiled.
    #[serde(default)]
    pub compile_job: Option<String>,
    /// Scores and costs recorded when it was made (training score, compile cost, …).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metrics: Option<Value>,
}

/// A folder read back: the spec with its texts inlined, ready to validate and post.
#[derive(Debug, Clone, PartialEq)]
pub struct Folder {
    pub name: String,
    /// The spec as JSON; not validated here, so that the service's validation (with its
    /// pointers) is the one answer for folders and for posted specs alike.
    pub spec: Value,
    pub provenance: Option<Provenance>,
    /// Spec pointer of each inlined text field → the file it came from.
    texts: BTreeMap<String, String>,
}

/// One problem of a folder, located by file and, in the manifest, by JSON pointer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", location(.file, .pointer.as_deref()))]
pub struct FolderError {
    pub file: String,
    /// Pointer into the file when it is the manifest.
    pub pointer: Option<String>,
    pub message: String,
}

fn location(file: &str, pointer: Option<&str>) -> String {
    match pointer {
        Some(p) if !p.is_empty() => format!("{file} at {p}"),
        _ => file.to_owned(),
    }
}

/// Every problem found in a folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid workflow folder: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct FolderErrors(pub Vec<FolderError>);

/// Writes `spec` as a folder: the manifest plus one file per prompt and per code step.
pub fn export(name: &str, spec: &WorkflowSpec, provenance: &Provenance) -> FileMap {
    let mut files = FileMap::new();
    let mut spec_value = serde_json::to_value(spec).unwrap_or(Value::Null);
    if let Some(nodes) = spec_value.get_mut("nodes").and_then(Value::as_object_mut) {
        extract_texts(nodes, NODES_DIR, &mut files);
    }
    let manifest = serde_json::json!({
        "format": FOLDER_FORMAT,
        "name": name,
        "provenance": provenance,
        "spec": spec_value,
    });
    files.insert(MANIFEST.to_owned(), manifest_text(&manifest));
    files
}

/// The manifest as printed: keys sorted at every level, two-space indent, final newline.
fn manifest_text(manifest: &Value) -> String {
    let mut text = serde_json::to_string_pretty(&sorted(manifest)).unwrap_or_default();
    text.push('\n');
    text
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&map[k]))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Moves the text fields of `nodes` (and of consensus bodies, recursively) into files under
/// `dir`, leaving `<field>_file` references behind.
fn extract_texts(nodes: &mut Map<String, Value>, dir: &str, files: &mut FileMap) {
    for (id, node) in nodes.iter_mut() {
        let Some(node) = node.as_object_mut() else { continue };
        for (field, suffix) in TEXT_FIELDS {
            if let Some(Value::String(text)) = node.remove(field) {
                let path = format!("{dir}/{id}{suffix}");
                node.insert(format!("{field}_file"), Value::String(path.clone()));
                files.insert(path, text);
            }
        }
        if let Some(body) =
            node.get_mut("body").and_then(|b| b.get_mut("nodes")).and_then(Value::as_object_mut)
        {
            extract_texts(body, &format!("{dir}/{id}"), files);
        }
    }
}

/// Reads a folder back. Every problem is reported at once, each naming its file.
pub fn import(files: &FileMap) -> Result<Folder, FolderErrors> {
    let mut errors = Vec::new();
    let manifest_error = |pointer: &str, message: String| FolderError {
        file: MANIFEST.to_owned(),
        pointer: Some(pointer.to_owned()),
        message,
    };
    let Some(text) = files.get(MANIFEST) else {
        return Err(FolderErrors(vec![FolderError {
            file: MANIFEST.to_owned(),
            pointer: None,
            message: "missing: a workflow folder has its manifest at the root".to_owned(),
        }]));
    };
    let manifest: Value = serde_json::from_str(text)
        .map_err(|e| FolderErrors(vec![manifest_error("", format!("not valid JSON: {e}"))]))?;
    let Some(manifest) = manifest.as_object() else {
        return Err(FolderErrors(vec![manifest_error("", "must be a JSON object".to_owned())]));
    };
    for key in manifest.keys().filter(|k| !["format", "name", "provenance", "spec"].contains(&k.as_str())) {
        errors.push(manifest_error(&format!("/{}", escape_pointer_token(key)), "unknown field".to_owned()));
    }
    match manifest.get("format").and_then(Value::as_str) {
        Some(FOLDER_FORMAT) => {}
        other => errors.push(manifest_error(
            "/format",
            format!(
                "must be `{FOLDER_FORMAT}`, found {}",
                other.map_or("nothing".into(), |f| format!("`{f}`"))
            ),
        )),
    }
    let name = manifest.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
    if name.is_empty() {
        errors.push(manifest_error("/name", "the workflow name is required".to_owned()));
    }
    let provenance = match manifest.get("provenance") {
        None | Some(Value::Null) => None,
        Some(value) => match serde_path_to_error::deserialize::<_, Provenance>(value) {
            Ok(p) => Some(p),
            Err(e) => {
                let pointer = crate::validate::path_to_pointer(e.path());
                errors.push(manifest_error(&format!("/provenance{pointer}"), e.into_inner().to_string()));
                None
            }
        },
    };
    let mut spec = manifest.get("spec").cloned().unwrap_or(Value::Null);
    let mut texts = BTreeMap::new();
    if !spec.is_object() {
        errors.push(manifest_error("/spec", "must be a workflow spec object".to_owned()));
    }
    // Missing or malformed nodes are left to the spec's own validation.
    if let Some(nodes) = spec.get_mut("nodes").and_then(Value::as_object_mut) {
        inline_texts(nodes, "/nodes", files, &mut texts, &mut errors);
    }
    let used: BTreeSet<&String> = texts.values().collect();
    for path in files.keys().filter(|p| p.as_str() != MANIFEST && !used.contains(p)) {
        errors.push(FolderError {
            file: path.clone(),
            pointer: None,
            message: format!("no node of {MANIFEST} refers to this file (a renamed or removed node?)"),
        });
    }
    if errors.is_empty() { Ok(Folder { name, spec, provenance, texts }) } else { Err(FolderErrors(errors)) }
}

/// The reverse of [`extract_texts`]: replaces each `<field>_file` by the file's text.
fn inline_texts(
    nodes: &mut Map<String, Value>,
    pointer: &str,
    files: &FileMap,
    texts: &mut BTreeMap<String, String>,
    errors: &mut Vec<FolderError>,
) {
    for (id, node) in nodes.iter_mut() {
        let node_pointer = format!("{pointer}/{}", escape_pointer_token(id));
        let Some(node) = node.as_object_mut() else { continue };
        for (field, _) in TEXT_FIELDS {
            let key = format!("{field}_file");
            let Some(reference) = node.remove(&key) else { continue };
            let at = format!("/spec{node_pointer}/{key}");
            let error = |message: String| FolderError {
                file: MANIFEST.to_owned(),
                pointer: Some(at.clone()),
                message,
            };
            if node.contains_key(field) {
                errors.push(error(format!("give `{field}` or `{key}`, not both")));
                continue;
            }
            let Some(path) = reference.as_str() else {
                errors.push(error("must be the path of a file in the folder".to_owned()));
                continue;
            };
            match files.get(path) {
                Some(text) => {
                    node.insert(field.to_owned(), Value::String(text.clone()));
                    texts.insert(format!("{node_pointer}/{field}"), path.to_owned());
                }
                None => errors.push(error(format!("`{path}` does not exist in the folder"))),
            }
        }
        if let Some(body) =
            node.get_mut("body").and_then(|b| b.get_mut("nodes")).and_then(Value::as_object_mut)
        {
            inline_texts(body, &format!("{node_pointer}/body/nodes"), files, texts, errors);
        }
    }
}

impl Folder {
    /// Where a problem at `pointer` (a JSON pointer into the spec, as validation reports it)
    /// sits in the folder: the text file it came from, or the manifest at `/spec…`.
    pub fn locate(&self, pointer: &str) -> FolderError {
        for (text_pointer, file) in &self.texts {
            let inside = pointer.strip_prefix(text_pointer.as_str());
            if inside.is_some_and(|rest| rest.is_empty() || rest.starts_with('/')) {
                return FolderError { file: file.clone(), pointer: None, message: String::new() };
            }
        }
        FolderError {
            file: MANIFEST.to_owned(),
            pointer: Some(format!("/spec{pointer}")),
            message: String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference() -> WorkflowSpec {
        WorkflowSpec::from_json(include_str!("../../../examples/gsm_consensus.json")).expect("valid example")
    }

    fn provenance(spec: &WorkflowSpec) -> Provenance {
        Provenance {
            content_hash: spec.content_hash(),
            source: "compile".into(),
            parent: Some("sha256:00".into()),
            compile_job: Some("0190f3c2-0000-7000-8000-000000000000".into()),
            metrics: Some(serde_json::json!({"train_score": 1.0})),
        }
    }

    #[test]
    fn every_text_gets_a_file_named_after_its_node() {
        let spec = reference();
        let files = export("gsm", &spec, &provenance(&spec));
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "nodes/answer.py",
                "nodes/extract.prompt.txt",
                "nodes/extract.system.txt",
                "nodes/solve/program.prompt.txt",
                "nodes/solve/program.system.txt",
                "nodes/solve/run.py",
                "workflow.json",
            ]
        );
        assert!(files["nodes/solve/run.py"].starts_with("import re\n"));
        assert!(!files[MANIFEST].contains("def run"), "code stays out of the manifest");
        assert!(files[MANIFEST].contains("\"code_file\": \"nodes/solve/run.py\""));
    }

    #[test]
    fn import_gives_back_the_same_content_and_bytes() {
        let spec = reference();
        let files = export("gsm", &spec, &provenance(&spec));
        let folder = import(&files).expect("the export reads back");
        assert_eq!(folder.name, "gsm");
        assert_eq!(folder.provenance, Some(provenance(&spec)));
        let back = WorkflowSpec::from_value(folder.spec).expect("valid");
        assert_eq!(back.content_hash(), spec.content_hash());
        assert_eq!(export("gsm", &back, &provenance(&back)), files);
    }

    #[test]
    fn pointers_map_to_the_file_they_came_from() {
        let spec = reference();
        let folder = import(&export("gsm", &spec, &provenance(&spec))).expect("reads back");
        assert_eq!(folder.locate("/nodes/solve/body/nodes/run/code").file, "nodes/solve/run.py");
        assert_eq!(folder.locate("/nodes/extract/prompt").file, "nodes/extract.prompt.txt");
        let manifest = folder.locate("/nodes/extract/decoding/temperature");
        assert_eq!(manifest.file, MANIFEST);
        assert_eq!(manifest.pointer.as_deref(), Some("/spec/nodes/extract/decoding/temperature"));
        // A prefix of another node's id is not that node.
        assert_eq!(folder.locate("/nodes/extract/promptx").file, MANIFEST);
    }

    #[test]
    fn problems_name_their_file() {
        let spec = reference();
        let mut files = export("gsm", &spec, &provenance(&spec));
        files.remove("nodes/answer.py");
        files.insert("nodes/stale.py".into(), "def run():\n    return 1\n".into());
        let errors = import(&files).unwrap_err().0;
        assert!(
            errors.iter().any(|e| e.file == MANIFEST
                && e.pointer.as_deref() == Some("/spec/nodes/answer/code_file")
                && e.message.contains("nodes/answer.py")),
            "{errors:?}"
        );
        assert!(errors.iter().any(|e| e.file == "nodes/stale.py"), "{errors:?}");

        let mut files = export("gsm", &spec, &provenance(&spec));
        files.insert(MANIFEST.into(), "{\"format\": 1".into());
        let errors = import(&files).unwrap_err().0;
        assert!(errors[0].to_string().starts_with("workflow.json"), "{errors:?}");
        assert!(import(&FileMap::new()).unwrap_err().to_string().contains("workflow.json"));
    }

    #[test]
    fn manifest_problems_carry_their_pointer() {
        let spec = reference();
        let mut files = export("gsm", &spec, &provenance(&spec));
        let manifest =
            files[MANIFEST].replace("sgde.folder/v1", "sgde.folder/v9").replace("\"source\"", "\"sourse\"");
        files.insert(MANIFEST.into(), manifest);
        let errors = import(&files).unwrap_err().0;
        let pointers: Vec<_> = errors.iter().filter_map(|e| e.pointer.as_deref()).collect();
        assert!(pointers.contains(&"/format"), "{errors:?}");
        assert!(pointers.iter().any(|p| p.starts_with("/provenance")), "{errors:?}");
    }
}
