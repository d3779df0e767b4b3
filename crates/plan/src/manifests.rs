//! Reading manifests: files, directories (optionally recursive) or `-` for stdin; each file
//! a stream of YAML documents (or `kind: List`s, nested or not). PodIdentityBindings, ServiceAccounts
//! with the short-form annotations, PodIdentityPolicies and Namespaces (for their labels)
//! are kept; anything else is counted and ignored.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use podidentity_api::credentials_request::{self, CredentialsRequest};
use podidentity_api::{GROUP, PodIdentityBinding, PodIdentityPolicy, VERSION};
use serde::Serialize;
use serde_json::Value;

/// Where a document came from: its file and its 1-based position in that file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Source {
    pub file: String,
    pub document: usize,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}, document {}", self.file, self.document)
    }
}

/// A ServiceAccount that asks for a role through annotations.
#[derive(Clone, Debug)]
pub struct ShortFormServiceAccount {
    pub namespace: Option<String>,
    pub name: String,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub enum Document {
    Binding(Box<PodIdentityBinding>),
    /// A PodIdentityPolicy: the cluster's rules for the namespaces it selects.
    Policy(Box<PodIdentityPolicy>),
    /// A Namespace, for its labels (which policies select it).
    Namespace {
        name: String,
        labels: BTreeMap<String, String>,
    },
    ServiceAccount(ShortFormServiceAccount),
    /// OpenShift's request for cloud credentials (`oc adm release extract
    /// --credentials-requests` writes them).
    CredentialsRequest(Box<CredentialsRequest>),
    /// A document of a kind we read that could not be understood.
    Unreadable {
        kind: String,
        namespace: Option<String>,
        name: Option<String>,
        field: String,
        message: String,
    },
}

#[derive(Clone, Debug)]
pub struct SourcedDocument {
    pub source: Source,
    pub document: Document,
}

/// A file that could not be read or parsed at all (exit code 2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InputProblem {
    pub file: String,
    pub message: String,
}

impl std::fmt::Display for InputProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file, self.message)
    }
}

#[derive(Debug, Default)]
pub struct Inputs {
    pub documents: Vec<SourcedDocument>,
    pub ignored_documents: usize,
    pub problems: Vec<InputProblem>,
}

/// Reads every path; problems with one file do not stop the others.
pub fn read_inputs(paths: &[PathBuf], recursive: bool) -> Inputs {
    let mut inputs = Inputs::default();
    for path in paths {
        if path.as_os_str() == "-" {
            let mut text = String::new();
            match std::io::stdin().read_to_string(&mut text) {
                Ok(_) => parse_file("<stdin>", &text, &mut inputs),
                Err(err) => inputs.problems.push(InputProblem {
                    file: "<stdin>".into(),
                    message: format!("cannot read: {err}"),
                }),
            }
            continue;
        }
        let files = match manifest_files(path, recursive) {
            Ok(files) if files.is_empty() => {
                inputs.problems.push(InputProblem {
                    file: path.display().to_string(),
                    message: nothing_found(path, recursive),
                });
                continue;
            }
            Ok(files) => files,
            Err(message) => {
                inputs.problems.push(InputProblem {
                    file: path.display().to_string(),
                    message,
                });
                continue;
            }
        };
        for file in files {
            let shown = file.display().to_string();
            match std::fs::read_to_string(&file) {
                Ok(text) => parse_file(&shown, &text, &mut inputs),
                Err(err) => inputs.problems.push(InputProblem {
                    file: shown,
                    message: format!("cannot read: {err}"),
                }),
            }
        }
    }
    inputs
}

/// The manifest files a path names, sorted: the file itself, or the `.yaml`, `.yml` and
/// `.json` files of a directory (its subdirectories too with `recursive`, like kubectl -R).
fn manifest_files(path: &Path, recursive: bool) -> Result<Vec<PathBuf>, String> {
    let metadata = std::fs::metadata(path).map_err(|err| format!("cannot read: {err}"))?;
    if !metadata.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|err| format!("cannot list directory: {err}"))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    entries.sort();
    for entry in entries {
        if entry.is_dir() {
            if recursive {
                files.extend(manifest_files(&entry, true)?);
            }
        } else if entry
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| ["yaml", "yml", "json"].contains(&ext))
        {
            files.push(entry);
        }
    }
    Ok(files)
}

/// Why a directory gave no manifest, and what to do (a CI gate that plans nothing must
/// say so, not pass).
fn nothing_found(path: &Path, recursive: bool) -> String {
    let has_subdirectories = std::fs::read_dir(path)
        .map(|entries| entries.flatten().any(|e| e.path().is_dir()))
        .unwrap_or(false);
    match (recursive, has_subdirectories) {
        (false, true) => "no manifest (.yaml, .yml, .json) in this directory; it has \
                          subdirectories: add -R to read them"
            .into(),
        (true, _) => "no manifest (.yaml, .yml, .json) in this directory or below it".into(),
        (false, false) => "no manifest (.yaml, .yml, .json) in this directory".into(),
    }
}

/// The parser's budget for one file, in proportion to its size: a bundle of thousands of
/// objects (what GitOps tools render) is read whole, while a file still cannot make the
/// parser do more than a few times its own size in work (aliases stay capped as before).
fn options_for(text: &str) -> serde_saphyr::Options {
    let bytes = text.len();
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_documents: (bytes / 16).max(1_024),
            max_events: bytes.saturating_add(16).max(1_000_000),
            max_nodes: bytes.saturating_add(16).max(250_000),
        },
    }
}

/// The objects of a document: itself, or what a `kind: List` holds (what `kubectl get -o
/// yaml` prints), Lists within Lists expanded as kubectl expands them.
fn objects(value: Value, out: &mut Vec<Value>) {
    match value {
        Value::Object(mut object)
            if object.get("kind").and_then(Value::as_str) == Some("List")
                && object.get("items").is_some_and(Value::is_array) =>
        {
            if let Some(Value::Array(items)) = object.remove("items") {
                for item in items {
                    objects(item, out);
                }
            }
        }
        other => out.push(other),
    }
}

/// Reads one file's text, as `read_inputs` reads each file (the fuzz target's way in).
pub fn read_text(file: &str, text: &str) -> Inputs {
    let mut inputs = Inputs::default();
    parse_file(file, text, &mut inputs);
    inputs
}

fn parse_file(file: &str, text: &str, inputs: &mut Inputs) {
    let parsed = serde_saphyr::from_multiple_with_options(text, options_for(text));
    let documents: Vec<Value> = match parsed {
        Ok(documents) => documents,
        Err(err) => {
            inputs.problems.push(InputProblem {
                file: file.to_string(),
                message: format!("not valid YAML: {err}"),
            });
            return;
        }
    };
    for (index, value) in documents.into_iter().enumerate() {
        let source = Source {
            file: file.to_string(),
            document: index + 1,
        };
        let mut found = Vec::new();
        objects(value, &mut found);
        for object in found {
            classify(source.clone(), object, inputs);
        }
    }
}

fn classify(source: Source, value: Value, inputs: &mut Inputs) {
    if value.is_null() {
        return; // an empty document, e.g. after a trailing `---`
    }
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let metadata = value.get("metadata");
    let text = |key: &str| {
        metadata
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .map(String::from)
    };
    let (namespace, name) = (text("namespace"), text("name"));
    let unreadable = |field: String, message: String| Document::Unreadable {
        kind: kind.clone(),
        namespace: namespace.clone(),
        name: name.clone(),
        field,
        message,
    };

    let document = match kind.as_str() {
        "PodIdentityBinding" | "PodIdentityPolicy" => {
            let wanted = format!("{GROUP}/{VERSION}");
            if api_version != wanted {
                unreadable(
                    "apiVersion".into(),
                    format!("{api_version:?} is not served: use apiVersion: {wanted}"),
                )
            } else if name.as_deref().is_none_or(str::is_empty) {
                unreadable("metadata.name".into(), "is required".into())
            } else if kind == "PodIdentityBinding" {
                typed(value, Document::Binding).unwrap_or_else(|(f, m)| unreadable(f, m))
            } else {
                typed(value, Document::Policy).unwrap_or_else(|(f, m)| unreadable(f, m))
            }
        }
        "CredentialsRequest" => {
            let wanted = format!("{}/v1", credentials_request::GROUP);
            if api_version != wanted {
                unreadable(
                    "apiVersion".into(),
                    format!("{api_version:?} is not read: use apiVersion: {wanted}"),
                )
            } else if name.as_deref().is_none_or(str::is_empty) {
                unreadable("metadata.name".into(), "is required".into())
            } else {
                typed(value, Document::CredentialsRequest).unwrap_or_else(|(f, m)| unreadable(f, m))
            }
        }
        "Namespace" if api_version == "v1" => match name {
            Some(name) if !name.is_empty() => Document::Namespace {
                name,
                labels: metadata
                    .and_then(|m| m.get("labels"))
                    .and_then(|l| serde_json::from_value(l.clone()).ok())
                    .unwrap_or_default(),
            },
            _ => unreadable("metadata.name".into(), "is required".into()),
        },
        "ServiceAccount" if api_version == "v1" => {
            let annotations: BTreeMap<String, String> = metadata
                .and_then(|m| m.get("annotations"))
                .and_then(|a| serde_json::from_value(a.clone()).ok())
                .unwrap_or_default();
            if !podidentity_iam::short_form::requests_role(&annotations) {
                inputs.ignored_documents += 1;
                return;
            }
            match name {
                Some(name) if !name.is_empty() => {
                    Document::ServiceAccount(ShortFormServiceAccount {
                        namespace,
                        name,
                        annotations,
                    })
                }
                _ => unreadable("metadata.name".into(), "is required".into()),
            }
        }
        _ => {
            inputs.ignored_documents += 1;
            return;
        }
    };
    inputs.documents.push(SourcedDocument { source, document });
}

/// One of our resources read into its type, or the field and the words of what is wrong.
fn typed<T: serde::de::DeserializeOwned>(
    value: Value,
    wrap: fn(Box<T>) -> Document,
) -> Result<Document, (String, String)> {
    serde_path_to_error::deserialize::<_, T>(value)
        .map(|object| wrap(Box::new(object)))
        .map_err(|err| {
            (
                field_path(err.path()),
                plain_serde_message(&err.inner().to_string()),
            )
        })
}

/// Serde names Rust types (`expected i64`); users write YAML, so name YAML's types.
pub fn plain_serde_message(message: &str) -> String {
    let mut text = message.to_string();
    for rust in ["i64", "i32", "u64", "u32", "usize", "f64"] {
        let number = if rust == "f64" {
            "a number"
        } else {
            "an integer"
        };
        text = text.replace(&format!("expected {rust}"), &format!("expected {number}"));
    }
    text.replace("expected a boolean", "expected true or false")
}

/// A deserialization path as a field reference (`spec.permissions.statements[0].effect`).
pub fn field_path(path: &serde_path_to_error::Path) -> String {
    let text = path.to_string();
    if text == "." {
        "(document)".into()
    } else {
        text
    }
}
