//! `swarm serve`'s HTTP API over the [`Service`]'s jobs.
//!
//! | request | answer |
//! |---|---|
//! | `POST /jobs` with `{"paths": [...], "priority": N, "timeout_per_doc": "30s"}` | `201 {"id", "documents"}` |
//! | `POST /jobs?priority=N&timeout_per_doc=30s` with a PDF body (`application/pdf`) | `201 {"id", "documents": 1}` |
//! | `GET /jobs` | every job's status |
//! | `GET /jobs/{id}` | its status and progress |
//! | `GET /jobs/{id}/results` | its JSON Lines, streamed as documents finish, ending with the job |
//! | `DELETE /jobs/{id}` | cancels it; its status |
//! | `GET /health` | `200 {"status": "ok"}`, `503` while draining |
//! | `GET /metrics` | Prometheus exposition |
//!
//! Every error is a 4xx or 5xx with `{"error": "..."}`. Paths must lie under one of the
//! service's roots (after symbolic links are resolved), which are also all its agents may
//! read.

use super::control::Views;
use super::jobs::{JobError, Service};
use crate::pdf::job::{collect_inputs, DocLimits};
use axum::body::{Body, Bytes};
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The longest path a job may name, in bytes.
const PATH_MAX: usize = 4096;

/// Paths a job may name at most.
const PATHS_MAX: usize = 100_000;

/// Files a job may have at most, its folders walked.
const FILES_MAX: usize = 1_000_000;

/// What the API serves from.
pub struct Api {
    /// The jobs.
    pub service: Arc<Service>,
    /// Folders whose files jobs may name (canonical).
    pub roots: Vec<PathBuf>,
    /// Where uploaded files are kept while their job lasts.
    pub spool: PathBuf,
    /// Folders no job may name, even under a root: the uploads and the results (one
    /// client must not read another's).
    pub private: Vec<PathBuf>,
    /// A job's limits when it gives none.
    pub defaults: DocLimits,
    /// The largest upload, bytes.
    pub max_upload: usize,
    /// The swarm's views, for `/metrics`.
    pub views: Views,
    /// Uploads so far, to name their folders.
    uploads: AtomicU64,
}

impl Api {
    /// The API over `service`.
    pub fn new(
        service: Arc<Service>,
        roots: Vec<PathBuf>,
        spool: PathBuf,
        private: Vec<PathBuf>,
        defaults: DocLimits,
        max_upload: usize,
        views: Views,
    ) -> Self {
        Self {
            service,
            roots,
            spool,
            private,
            defaults,
            max_upload,
            views,
            uploads: AtomicU64::new(0),
        }
    }
}

/// The routes.
pub fn router(api: Arc<Api>) -> Router {
    let limit = api.max_upload;
    Router::new()
        .route("/jobs", get(list).post(submit))
        .route("/jobs/{id}", get(status).delete(cancel))
        .route("/jobs/{id}/results", get(results))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(api)
}

/// An error answer: its status, and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    code: StatusCode,
    message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.code, axum::Json(body)).into_response()
    }
}

/// An error answer.
fn error(code: StatusCode, msg: impl std::fmt::Display) -> ApiError {
    ApiError {
        code,
        message: msg.to_string(),
    }
}

fn job_error(e: JobError) -> ApiError {
    let code = match &e {
        JobError::NotFound(_) => StatusCode::NOT_FOUND,
        JobError::Draining => StatusCode::SERVICE_UNAVAILABLE,
        JobError::Over(..) => StatusCode::CONFLICT,
        JobError::Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(code, e)
}

/// A job's options, in its JSON body or in the query of an upload.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    priority: Option<i32>,
    /// `"30s"`, `"500ms"`, or a number of seconds.
    timeout_per_doc: Option<serde_json::Value>,
}

/// A JSON body: the paths and the [`Options`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PathsBody {
    paths: Vec<String>,
    priority: Option<i32>,
    timeout_per_doc: Option<serde_json::Value>,
}

impl Api {
    /// The limits `priority` and `timeout` ask for.
    fn limits(
        &self,
        priority: Option<i32>,
        timeout: Option<&serde_json::Value>,
    ) -> Result<DocLimits, ApiError> {
        let bad = |m: String| error(StatusCode::BAD_REQUEST, m);
        // A bare number is seconds, in a query string as in JSON (`?timeout_per_doc=10`
        // is ten seconds, as `"timeout_per_doc": 10` is), not the CLI's milliseconds.
        let as_number = match timeout {
            Some(serde_json::Value::String(s)) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(serde_json::Value::Number),
            _ => None,
        };
        let timeout = match as_number.as_ref().or(timeout) {
            None => self.defaults.timeout,
            Some(serde_json::Value::String(s)) => {
                crate::task::parse_duration(s).map_err(|e| bad(format!("timeout_per_doc: {e}")))?
            }
            Some(serde_json::Value::Number(n)) => n
                .as_f64()
                .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| bad("timeout_per_doc: seconds between 0 and 86400".to_string()))?,
            Some(other) => {
                return Err(bad(format!(
                    "timeout_per_doc: expected \"30s\" or seconds, got {other}"
                )))
            }
        };
        if timeout.is_zero() {
            return Err(bad("timeout_per_doc: must be more than zero".into()));
        }
        Ok(DocLimits {
            timeout,
            priority: priority.unwrap_or(self.defaults.priority),
        })
    }

    /// The PDF files that `paths` name, each under a root: or the answer saying which
    /// are not.
    fn files(&self, paths: &[String]) -> Result<Vec<PathBuf>, ApiError> {
        if paths.is_empty() {
            return Err(error(StatusCode::BAD_REQUEST, "paths: give at least one"));
        }
        if paths.len() > PATHS_MAX {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("paths: at most {PATHS_MAX}"),
            ));
        }
        let mut missing = Vec::new();
        let mut outside = Vec::new();
        let mut named = Vec::new();
        for p in paths {
            if p.len() > PATH_MAX || p.contains('\0') {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("paths: a path of {} bytes or with a NUL", p.len()),
                ));
            }
            match std::fs::canonicalize(p) {
                Err(_) => missing.push(p.clone()),
                Ok(c) if !self.under_roots(&c) => outside.push(p.clone()),
                Ok(c) => named.push(c),
            }
        }
        if !missing.is_empty() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("no such file or directory: {}", missing.join(", ")),
            ));
        }
        if !outside.is_empty() {
            return Err(error(
                StatusCode::FORBIDDEN,
                format!(
                    "outside the service's roots ({}): {}",
                    self.roots_list(),
                    outside.join(", ")
                ),
            ));
        }
        // A directory's files are checked too: a link inside may point anywhere.
        let files: Vec<PathBuf> = collect_inputs(&named, None)
            .into_iter()
            .filter(|f| std::fs::canonicalize(f).is_ok_and(|c| self.under_roots(&c)))
            .collect();
        if files.is_empty() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("no PDF found in {}", paths.join(", ")),
            ));
        }
        if files.len() > FILES_MAX {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("{} files: a job may have at most {FILES_MAX}", files.len()),
            ));
        }
        Ok(files)
    }

    /// Whether `p` (canonical) may be named: under a root, not in a private folder.
    fn under_roots(&self, p: &Path) -> bool {
        self.roots.iter().any(|r| p.starts_with(r))
            && !self.private.iter().any(|d| p.starts_with(d))
    }

    fn roots_list(&self) -> String {
        let r: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
        r.join(", ")
    }

    /// Keeps an uploaded PDF in a folder of its own under the spool and submits its job,
    /// in one piece off the runtime's thread: a client that goes away meanwhile leaves a
    /// job (which runs and is forgotten in time), never a folder nobody removes.
    async fn upload(self: &Arc<Self>, body: Bytes, limits: DocLimits) -> Result<String, ApiError> {
        let n = self.uploads.fetch_add(1, Ordering::Relaxed); // a name, nothing ordered
        let dir = self
            .spool
            .join(format!("upload-{}-{n}", std::process::id()));
        let api = self.clone();
        let done = tokio::task::spawn_blocking(move || {
            let file = dir.join("document.pdf");
            let kept = std::fs::create_dir(&dir).and_then(|()| std::fs::write(&file, &body));
            if let Err(e) = kept {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("keeping the upload: {e}"),
                ));
            }
            api.service
                .submit(vec![file], limits, Some(dir))
                .map_err(job_error)
        })
        .await;
        done.map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))?
    }
}

fn created(id: String, documents: usize) -> Response {
    let location = format!("/jobs/{id}");
    (
        StatusCode::CREATED,
        [(LOCATION, location)],
        axum::Json(serde_json::json!({ "id": id, "documents": documents })),
    )
        .into_response()
}

async fn submit(
    State(api): State<Arc<Api>>,
    query: Result<Query<Options>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let ctype = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ctype.as_str() {
        "application/json" => {
            if query
                .as_ref()
                .is_ok_and(|q| q.priority.is_some() || q.timeout_per_doc.is_some())
            {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    "with a JSON body, give the options in it, not in the query",
                ));
            }
            let req: PathsBody = serde_json::from_slice(&body)
                .map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad JSON body: {e}")))?;
            let limits = api.limits(req.priority, req.timeout_per_doc.as_ref())?;
            // Paths resolved and folders walked off the runtime's thread: a large folder
            // holds up no other request.
            let a = api.clone();
            let files = tokio::task::spawn_blocking(move || a.files(&req.paths))
                .await
                .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, e))??;
            let n = files.len();
            let id = api.service.submit(files, limits, None).map_err(job_error)?;
            Ok(created(id, n))
        }
        "application/pdf" => {
            let Query(opts) =
                query.map_err(|e| error(StatusCode::BAD_REQUEST, format!("bad query: {e}")))?;
            let limits = api.limits(opts.priority, opts.timeout_per_doc.as_ref())?;
            if body.is_empty() {
                return Err(error(StatusCode::BAD_REQUEST, "an empty upload"));
            }
            if api.service.is_draining() {
                return Err(job_error(JobError::Draining));
            }
            let id = api.upload(body, limits).await?;
            Ok(created(id, 1))
        }
        "" => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "say Content-Type: application/json (paths) or application/pdf (a document)",
        )),
        other => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("{other}: expected application/json or application/pdf"),
        )),
    }
}

async fn list(State(api): State<Arc<Api>>) -> Response {
    axum::Json(api.service.list()).into_response()
}

async fn status(
    State(api): State<Arc<Api>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let s = api.service.status(&id).map_err(job_error)?;
    Ok(axum::Json(s).into_response())
}

async fn cancel(
    State(api): State<Arc<Api>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let s = api.service.cancel(&id).map_err(job_error)?;
    Ok(axum::Json(s).into_response())
}

async fn health(State(api): State<Arc<Api>>) -> Result<Response, ApiError> {
    if api.service.is_draining() {
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, "draining"));
    }
    Ok(axum::Json(serde_json::json!({ "status": "ok" })).into_response())
}

async fn metrics(State(api): State<Arc<Api>>, headers: HeaderMap) -> Response {
    super::http::metrics(api.views.clone(), headers).await
}

/// How long a results stream waits for a line before it looks again.
const RESULTS_POLL: Duration = Duration::from_secs(5);

/// The most a results stream reads from a job's file at once.
const RESULTS_CHUNK: usize = 1 << 20;

async fn results(
    State(api): State<Arc<Api>>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    api.service.status(&id).map_err(job_error)?;
    let service = api.service.clone();
    let stream = futures_util::stream::unfold((service, id, 0u64), |(svc, id, from)| async move {
        loop {
            let Ok(notify) = svc.notify_of(&id) else {
                return None; // forgotten meanwhile
            };
            // Registered before the lines are read: a line after the read wakes it.
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (svc2, id2) = (svc.clone(), id.clone());
            let read =
                tokio::task::spawn_blocking(move || svc2.lines_from(&id2, from, RESULTS_CHUNK))
                    .await;
            let Ok(Ok((bytes, over))) = read else {
                return None;
            };
            if !bytes.is_empty() {
                let next = from + bytes.len() as u64;
                return Some((Ok::<_, std::io::Error>(Bytes::from(bytes)), (svc, id, next)));
            }
            if over {
                return None;
            }
            let _ = tokio::time::timeout(RESULTS_POLL, notified).await;
        }
    });
    Ok((
        [(CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}
