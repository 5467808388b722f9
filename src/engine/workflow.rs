//! Workflow files (`workflows/*.toml`): collections, output layout, concurrency, retry
//! policy and endpoints. Unknown keys and wrong types are errors naming the key and line.

use crate::collection::Collection;
use crate::error::{Error, Result, WorkflowProblem};
use crate::write::harvest::Source;
use serde::Deserialize;
use std::path::Path;

/// A workflow: every field optional, so that a file names only what it changes.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// Collections to harvest.
    pub collections: Option<Vec<String>>,
    /// Where items come from: `stac-json` or `echo10`.
    pub source: Option<String>,
    /// Output layout.
    #[serde(default)]
    pub output: OutputSection,
    /// Concurrency limits.
    #[serde(default)]
    pub concurrency: ConcurrencySection,
    /// Retry policy.
    #[serde(default)]
    pub retry: RetrySection,
    /// Endpoints.
    #[serde(default)]
    pub endpoints: EndpointsSection,
}

/// `[output]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Local folder or object store URL.
    pub path: Option<String>,
    /// Folder below the output for daily files.
    pub daily_prefix: Option<String>,
    /// Options of the object store (`[output.options]`): `object_store` configuration keys,
    /// e.g. `aws_endpoint`, `aws_region`, `aws_allow_http` for `s3://` outputs. They apply
    /// over the `AWS_*` environment.
    pub options: Option<std::collections::BTreeMap<String, String>>,
}

/// `[concurrency]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencySection {
    /// Harvest tasks at once.
    pub days: Option<u32>,
    /// Item fetches at once within a day.
    pub fetches_per_day: Option<u32>,
    /// CMR requests at once.
    pub cmr_requests: Option<u32>,
}

/// `[retry]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Attempts of one HTTP request.
    pub request_attempts: Option<u32>,
    /// Attempts of one task.
    pub task_attempts: Option<u32>,
    /// First backoff delay.
    pub min_delay_ms: Option<u64>,
    /// Longest backoff delay.
    pub max_delay_ms: Option<u64>,
    /// Time limit of one task.
    pub task_timeout_s: Option<u64>,
}

/// `[endpoints]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointsSection {
    /// CMR base URL.
    pub cmr_url: Option<String>,
    /// `Client-Id` sent to CMR.
    pub client_id: Option<String>,
    /// Time limit of one HTTP request.
    pub request_timeout_s: Option<f64>,
}

impl Workflow {
    /// Reads and checks a workflow file.
    pub fn load(path: &Path) -> Result<Workflow> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Workflow {
            path: path.display().to_string(),
            problem: WorkflowProblem::Read(e),
        })?;
        Workflow::parse(&text, &path.display().to_string())
    }

    /// Parses and checks workflow text; `name` is used in errors.
    pub fn parse(text: &str, name: &str) -> Result<Workflow> {
        let err = |problem: WorkflowProblem| Error::Workflow {
            path: name.to_string(),
            problem,
        };
        let wf: Workflow = toml::from_str(text).map_err(|source| {
            let line = source
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            err(WorkflowProblem::Toml {
                line,
                source: Box::new(source),
            })
        })?;
        if let Some(names) = &wf.collections {
            Collection::parse_list(&names.join(","))
                .map_err(|e| err(WorkflowProblem::Collections(e)))?;
        }
        if let Some(source) = &wf.source
            && source.parse::<Source>().is_err()
        {
            return Err(err(WorkflowProblem::UnknownSource(source.clone())));
        }
        let positive = [
            ("concurrency.days", wf.concurrency.days.map(u64::from)),
            (
                "concurrency.fetches_per_day",
                wf.concurrency.fetches_per_day.map(u64::from),
            ),
            (
                "concurrency.cmr_requests",
                wf.concurrency.cmr_requests.map(u64::from),
            ),
            (
                "retry.request_attempts",
                wf.retry.request_attempts.map(u64::from),
            ),
            ("retry.task_attempts", wf.retry.task_attempts.map(u64::from)),
            ("retry.task_timeout_s", wf.retry.task_timeout_s),
        ];
        for (key, v) in positive {
            if v == Some(0) {
                return Err(err(WorkflowProblem::Zero { key }));
            }
        }
        if let Some(t) = wf.endpoints.request_timeout_s
            && !(t.is_finite() && t > 0.0)
        {
            return Err(err(WorkflowProblem::NotPositive {
                key: "endpoints.request_timeout_s",
            }));
        }
        Ok(wf)
    }

    /// The source named, if any.
    pub fn source(&self) -> std::result::Result<Option<Source>, String> {
        self.source.as_deref().map(str::parse).transpose()
    }

    /// The collections named, if any.
    pub fn collections(&self) -> Result<Option<Vec<Collection>>> {
        match &self.collections {
            None => Ok(None),
            Some(names) => Ok(Some(Collection::parse_list(&names.join(","))?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_workflow_parses_and_names_every_section() {
        let wf = Workflow::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/workflows/default.toml"
        )))
        .unwrap();
        assert_eq!(wf.collections().unwrap().unwrap(), Collection::ALL.to_vec());
        assert_eq!(wf.concurrency.days, Some(3));
        assert_eq!(wf.concurrency.fetches_per_day, Some(50));
        assert_eq!(wf.retry.task_attempts, Some(3));
        assert_eq!(
            wf.endpoints.cmr_url.as_deref(),
            Some("https://cmr.earthdata.nasa.gov")
        );
        assert_eq!(wf.output.daily_prefix.as_deref(), Some("daily"));
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_key_and_line() {
        let e = Workflow::parse("[concurrency]\ndays = 3\nfetchs = 2\n", "w.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("line 3") && msg.contains("fetchs"), "{msg}");
        assert!(!msg.contains('\n'));
        let e = Workflow::parse("[retry]\n\ntask_attempts = \"three\"\n", "w.toml").unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("line 3"), "{msg}");
        let e = Workflow::parse("collections = [\"HLSX30\"]\n", "w.toml").unwrap_err();
        assert!(e.to_string().contains("HLSX30"), "{e}");
        let e = Workflow::parse("[concurrency]\ndays = 0\n", "w.toml").unwrap_err();
        assert!(e.to_string().contains("concurrency.days"), "{e}");
        assert!(e.is_usage());
        assert_eq!(Workflow::parse("", "empty").unwrap(), Workflow::default());
    }
}
