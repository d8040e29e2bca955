//! The live world: reading IAM and the cluster into an
//! [`Observed`](crate::plan::observed::Observed) world ([`observe`]), and
//! executing a [`Plan`](crate::plan::Plan) against them ([`apply`]).
//!
//! Clients come from the standard settings: the AWS credential chain and
//! `aws-config` (IRSA web identity in a cluster, profiles and env locally,
//! `AWS_ENDPOINT_URL` honoured) and `kube` (kubeconfig or in-cluster). There
//! is no test-only code path. Every call goes through [`Clients::iam_call`] or
//! [`Clients::kube_call`], which count it, time it and give its error a stable code.

pub mod apply;
pub mod observe;
pub mod pace;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_iam::error::{ProvideErrorMetadata, SdkError};
use kube::api::ApiResource;
use kube::core::GroupVersionKind;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apply::WriteGuard;

use crate::kubeflow::{
    ISTIO_SECURITY_GROUP, ISTIO_SECURITY_VERSION, PROFILE_GROUP, PROFILE_KIND, PROFILE_PLURAL,
    PROFILE_VERSION,
};

/// Errors talking to IAM or Kubernetes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An IAM call failed.
    #[error("IAM {operation}: {code}: {message}")]
    Iam {
        /// The IAM action, e.g. `CreateRole`.
        operation: &'static str,
        /// The AWS error code, e.g. `NoSuchEntity`, or the SDK's failure kind.
        code: String,
        /// The message.
        message: String,
    },
    /// A Kubernetes call failed.
    #[error("Kubernetes {operation}: {message}")]
    Kube {
        /// What was attempted, e.g. `apply Profile team-a`.
        operation: String,
        /// The reason (HTTP status reason) when the API server gave one.
        code: String,
        /// The message.
        message: String,
    },
    /// No Kubernetes client could be made from the environment.
    #[error("connecting to Kubernetes (KUBECONFIG or in-cluster): {0}")]
    Connect(String),
    /// Waiting for something took too long.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound.
        seconds: u64,
    },
    /// IAM kept answering with more pages than any account holds.
    #[error("{operation} still truncated after {pages} pages")]
    Unbounded {
        /// The paginated operation.
        operation: &'static str,
        /// Pages read.
        pages: usize,
    },
    /// The executor's [`WriteGuard`](apply::WriteGuard) refused the call:
    /// nothing was sent.
    #[error(transparent)]
    Stopped(#[from] apply::Stopped),
    /// A create found the name taken by a resource kftenant does not own for
    /// this cluster (made by someone else since the world was read): nothing
    /// was written to it, and the rest of its tenant is skipped.
    #[error("{what}: {message}")]
    Conflict {
        /// The resource, e.g. `role team-a-prod-role`.
        what: String,
        /// Why it is not kftenant's, and what was left undone.
        message: String,
    },
}

impl Error {
    /// A stable label for metrics and reports: the AWS or Kubernetes error
    /// code, or the kind of failure.
    pub fn code(&self) -> &str {
        match self {
            Error::Iam { code, .. } | Error::Kube { code, .. } => code,
            Error::Connect(_) => "Connect",
            Error::Timeout { .. } => "Timeout",
            Error::Unbounded { .. } => "Unbounded",
            Error::Stopped(s) => s.code,
            Error::Conflict { .. } => "Conflict",
        }
    }

    fn iam<E, R>(operation: &'static str, e: SdkError<E, R>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        // The guard's interceptor refused an attempt (an SDK retry after
        // leadership was lost): say so, rather than "DispatchFailure".
        let mut cause = std::error::Error::source(&e);
        while let Some(c) = cause {
            if let Some(stopped) = c.downcast_ref::<apply::Stopped>() {
                return Error::Stopped(stopped.clone());
            }
            cause = c.source();
        }
        let code = e.code().map(String::from).unwrap_or_else(|| {
            match &e {
                SdkError::TimeoutError(_) => "Timeout",
                SdkError::DispatchFailure(_) => "DispatchFailure",
                SdkError::ResponseError(_) => "ResponseError",
                _ => "Unknown",
            }
            .to_string()
        });
        let message = e
            .message()
            .map(String::from)
            .unwrap_or_else(|| aws_sdk_iam::error::DisplayErrorContext(&e).to_string());
        Error::Iam {
            operation,
            code,
            message,
        }
    }

    fn kube(operation: impl Into<String>, e: kube::Error) -> Error {
        let (code, message) = match &e {
            kube::Error::Api(s) => (s.reason.clone(), s.message.clone()),
            other => ("Transport".to_string(), other.to_string()),
        };
        Error::Kube {
            operation: operation.into(),
            code,
            message,
        }
    }

    /// True for IAM's "not found".
    pub fn is_no_such_entity(&self) -> bool {
        self.code() == "NoSuchEntity"
    }

    /// True for Kubernetes' "not found".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube { code, .. } if code == "NotFound")
    }
}

/// Calls of one operation: how many, and how long they took in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    /// Calls made (pages, for paginated reads).
    pub count: u64,
    /// Time spent waiting for them.
    pub total: Duration,
}

/// API calls made, by operation (`iam:<Action>`, `kube:<verb>`), for reports,
/// metrics and benchmarks.
#[derive(Debug, Default)]
pub struct CallCounter {
    calls: Mutex<BTreeMap<String, CallStats>>,
}

impl CallCounter {
    /// Records `n` calls of `op` that took `elapsed` in all.
    pub fn record(&self, op: &str, n: u64, elapsed: Duration) {
        let mut calls = self.calls.lock().expect("counter lock");
        let stats = calls.entry(op.to_string()).or_default();
        stats.count += n;
        stats.total += elapsed;
    }

    /// Calls by operation.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.stats()
            .into_iter()
            .map(|(op, s)| (op, s.count))
            .collect()
    }

    /// Calls and their time by operation.
    pub fn stats(&self) -> BTreeMap<String, CallStats> {
        self.calls.lock().expect("counter lock").clone()
    }
}

/// The clients kftenant uses, and what it has done with them.
#[derive(Clone)]
pub struct Clients {
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// Kubernetes.
    pub kube: kube::Client,
    /// Calls made.
    pub calls: std::sync::Arc<CallCounter>,
    /// Namespaces seen, for steps that wait for the Kubeflow controller.
    pub namespaces: std::sync::Arc<NamespaceCache>,
    /// Paces IAM writes once IAM has throttled one (see [`pace`]).
    pub pacer: std::sync::Arc<pace::WritePacer>,
    /// Kubernetes without kube's own retry layer, which re-sends a request
    /// answered 429, 503 or 504 for minutes (15 tries, backoff up to
    /// 1,000 s, `Retry-After` honoured) where no guard can see it and no
    /// cycle can bound it. `kube` is the same: [`Clients::kube_call`]
    /// retries instead, a few times and bounded.
    kube_single_attempt: kube::Client,
    /// Asked before every call when set ([`Clients::for_writes`]).
    guard: Option<Arc<dyn WriteGuard>>,
}

/// The namespaces that exist, read with one LIST shared by every step that
/// waits for one (at most one LIST per [`NamespaceCache::REFRESH`]).
#[derive(Debug, Default)]
pub struct NamespaceCache {
    seen: tokio::sync::Mutex<(Option<Instant>, std::collections::BTreeSet<String>)>,
}

impl NamespaceCache {
    /// How old the list may be before a waiting step reads it again.
    pub const REFRESH: Duration = Duration::from_millis(250);

    /// True when namespace `name` exists (as of a LIST at most
    /// [`NamespaceCache::REFRESH`] old).
    pub async fn contains(&self, clients: &Clients, name: &str) -> Result<bool, Error> {
        let mut seen = self.seen.lock().await;
        if seen.0.is_none_or(|at| at.elapsed() >= Self::REFRESH) {
            let api: kube::Api<k8s_openapi::api::core::v1::Namespace> =
                kube::Api::all(clients.kube.clone());
            let list = clients
                .kube_call("list", "list Namespaces", || async {
                    api.list_metadata(&Default::default()).await
                })
                .await?;
            seen.1 = list
                .items
                .into_iter()
                .filter(|n| n.metadata.deletion_timestamp.is_none())
                .filter_map(|n| n.metadata.name)
                .collect();
            seen.0 = Some(Instant::now());
        }
        Ok(seen.1.contains(name))
    }
}

/// Attempts of one Kubernetes call (see [`Clients::kube_call`]).
pub const KUBE_ATTEMPTS: u32 = 4;

/// Bound on one attempt of a Kubernetes call.
pub const KUBE_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Bound on one attempt of an IAM call.
pub const IAM_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(60);

/// Failures after which a Kubernetes call is worth making again: the API
/// server asked to slow down or was unavailable, or the connection broke.
fn kube_retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        kube::Error::HyperError(_) | kube::Error::Service(_) => true,
        _ => false,
    }
}

impl Clients {
    /// Clients from the standard settings. `region` is used when the
    /// environment names none (IAM is global; any region signs). The API
    /// server is the kubeconfig's `context`, or the current context (or the
    /// in-cluster service account) when `None`.
    pub async fn from_env(
        region: &str,
        max_attempts: u32,
        context: Option<&str>,
    ) -> Result<Clients, Error> {
        // The standard retry mode (a random backoff, doubling), not the
        // adaptive one: kftenant paces its writes itself (see `pace`).
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::standard().with_max_attempts(max_attempts));
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            loader = loader.region(aws_config::Region::new(region.to_string()));
        }
        // A hung IAM must not hang a cycle: each attempt is bounded (and a
        // timed-out attempt is retried like any transient failure).
        loader = loader.timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(IAM_ATTEMPT_TIMEOUT)
                .build(),
        );
        let sdk = loader.load().await;
        let connect = |e: &dyn std::fmt::Display| Error::Connect(e.to_string());
        let config = match context {
            None => kube::Config::infer().await.map_err(|e| connect(&e))?,
            Some(context) => {
                let options = kube::config::KubeConfigOptions {
                    context: Some(context.to_string()),
                    ..Default::default()
                };
                kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| Error::Connect(format!("kubeconfig context `{context}`: {e}")))?
            }
        };
        // kube's own retry answers 429, 503 and 504 up to 15 times, its
        // backoff growing to 1,000 s: a refusing API server would hold a cycle
        // for minutes. `kube_call` retries instead, a few times and bounded.
        let mut config = config;
        config.default_retry = false;
        let kube = kube::Client::try_from(config).map_err(|e| connect(&e))?;
        let pacer = Arc::new(pace::WritePacer::default());
        let iam = aws_sdk_iam::config::Builder::from(&sdk)
            .interceptor(pace::PacingInterceptor(pacer.clone()))
            .retry_classifier(pace::PacingClassifier(pacer.clone()))
            .build();
        Ok(Clients {
            iam: aws_sdk_iam::Client::from_conf(iam),
            kube: kube.clone(),
            calls: Default::default(),
            namespaces: Default::default(),
            pacer,
            kube_single_attempt: kube,
            guard: None,
        })
    }

    /// The Kubernetes client without kube's retry layer (leader election:
    /// a refused renewal must count at once, not minutes later).
    pub fn kube_single_attempt(&self) -> kube::Client {
        self.kube_single_attempt.clone()
    }

    /// These clients for an executor whose every call `guard` must allow
    /// first: checked before each call ([`Clients::iam_call`],
    /// [`Clients::kube_call`], [`Clients::kube_write`]) and before each
    /// attempt the AWS SDK makes of its own (its retries), and Kubernetes
    /// without retries the guard cannot see. Calls are counted in the same
    /// counter.
    pub fn for_writes(&self, guard: Arc<dyn WriteGuard>) -> Clients {
        let iam = aws_sdk_iam::Client::from_conf(
            self.iam
                .config()
                .to_builder()
                .interceptor(GuardInterceptor(guard.clone()))
                .build(),
        );
        Clients {
            iam,
            kube: self.kube_single_attempt.clone(),
            calls: self.calls.clone(),
            namespaces: self.namespaces.clone(),
            pacer: self.pacer.clone(),
            kube_single_attempt: self.kube_single_attempt.clone(),
            guard: Some(guard),
        }
    }

    /// Clients over a given Kubernetes client and IAM endpoint (unit tests:
    /// a fake API server, an IAM endpoint that refuses connections).
    #[cfg(test)]
    pub(crate) fn for_tests(kube: kube::Client, iam_endpoint: &str) -> Clients {
        let config = aws_sdk_iam::Config::builder()
            .behavior_version(aws_sdk_iam::config::BehaviorVersion::latest())
            .region(aws_sdk_iam::config::Region::new("us-east-1"))
            .endpoint_url(iam_endpoint)
            .credentials_provider(aws_sdk_iam::config::Credentials::new(
                "testing", "testing", None, None, "tests",
            ))
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(3)
                    .with_initial_backoff(Duration::from_millis(10)),
            )
            .build();
        Clients {
            iam: aws_sdk_iam::Client::from_conf(config),
            kube: kube.clone(),
            calls: Default::default(),
            namespaces: Default::default(),
            pacer: Default::default(),
            kube_single_attempt: kube,
            guard: None,
        }
    }

    /// What the guard says, when there is one.
    fn allowed(&self) -> Result<(), Error> {
        match &self.guard {
            Some(g) => g.check().map_err(Error::Stopped),
            None => Ok(()),
        }
    }

    /// One IAM call (`op` is its action name): counted and timed as
    /// `iam:<op>`, its error given a stable code. Not sent when the guard
    /// refuses. A write waits for its slot first once IAM has throttled
    /// ([`pace::WritePacer`]); `call` is a future, so nothing is sent before
    /// it is awaited (and the guard is asked after the wait).
    pub(crate) async fn iam_call<T, E, R>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<T, Error>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        if !pace::is_read(op) {
            let wait = self.pacer.reserve(Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        self.allowed()?;
        let started = Instant::now();
        let result = call.await;
        self.calls
            .record(&format!("iam:{op}"), 1, started.elapsed());
        result.map_err(|e| Error::iam(op, e))
    }

    /// Every page of a paginated IAM read (the SDK's paginator follows
    /// `Marker` while `IsTruncated`), counted as one call per page.
    pub(crate) async fn iam_pages<T, E, R>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<Vec<T>, SdkError<E, R>>>,
    ) -> Result<Vec<T>, Error>
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        self.allowed()?;
        let started = Instant::now();
        let result = call.await;
        let n = result.as_ref().map_or(1, |pages| pages.len() as u64);
        self.calls
            .record(&format!("iam:{op}"), n, started.elapsed());
        result.map_err(|e| Error::iam(op, e))
    }

    /// One Kubernetes call: counted and timed as `kube:<verb>` (each
    /// attempt); `what` names it in errors (`apply Profile team-a`).
    ///
    /// `call` makes the request; it is made again, at most
    /// [`KUBE_ATTEMPTS`] times in all with a short backoff, when the API
    /// server refused it (429), failed (500, 502, 503, 504), the connection
    /// broke, or an attempt took longer than [`KUBE_ATTEMPT_TIMEOUT`]. The
    /// guard is asked before every attempt: nothing is sent once it refuses.
    /// Every call kftenant makes is safe to repeat: reads, server-side
    /// applies and merge patches of the same content, deletes (gone counts as
    /// deleted), and Events (a repeated one is only noise).
    pub(crate) async fn kube_call<T, F, Fut>(
        &self,
        verb: &'static str,
        what: impl Into<String>,
        mut call: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let what = what.into();
        let mut delay = Duration::from_millis(200);
        let mut attempt = 1;
        loop {
            self.allowed()?;
            let started = Instant::now();
            let result = tokio::time::timeout(KUBE_ATTEMPT_TIMEOUT, call()).await;
            self.calls
                .record(&format!("kube:{verb}"), 1, started.elapsed());
            let retry = match &result {
                Ok(Ok(_)) => false,
                Ok(Err(e)) => kube_retryable(e),
                Err(_) => true,
            };
            if !retry || attempt >= KUBE_ATTEMPTS {
                return match result {
                    Ok(r) => r.map_err(|e| Error::kube(what, e)),
                    Err(_) => Err(Error::Timeout {
                        what,
                        seconds: KUBE_ATTEMPT_TIMEOUT.as_secs(),
                    }),
                };
            }
            tokio::time::sleep(delay).await;
            delay *= 2;
            attempt += 1;
        }
    }

    /// A Kubernetes write: [`Clients::kube_call`] (the same bounded retries,
    /// the guard asked before every attempt). Named apart so that the
    /// executor's writes read as such.
    pub(crate) async fn kube_write<T, F, Fut>(
        &self,
        verb: &'static str,
        what: impl Into<String>,
        call: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        self.kube_call(verb, what, call).await
    }
}

/// Asks the guard before every attempt the AWS SDK makes, its own retries
/// included (the retry mode may wait many seconds before one).
/// A refused attempt fails the call without being sent, and is not retried:
/// the SDK retries only transient transport errors, throttling and 5xx.
#[derive(Debug)]
struct GuardInterceptor(Arc<dyn WriteGuard>);

impl aws_sdk_iam::config::Intercept for GuardInterceptor {
    fn name(&self) -> &'static str {
        "kftenant::live::GuardInterceptor"
    }

    fn read_before_transmit(
        &self,
        _context: &aws_sdk_iam::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &aws_sdk_iam::config::RuntimeComponents,
        _cfg: &mut aws_sdk_iam::config::ConfigBag,
    ) -> Result<(), aws_sdk_iam::error::BoxError> {
        self.0.check().map_err(Into::into)
    }
}

/// Istio's `authorizationpolicies.security.istio.io/v1beta1` resource (what KFAM writes).
pub fn authorization_policy_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(
            ISTIO_SECURITY_GROUP,
            ISTIO_SECURITY_VERSION,
            "AuthorizationPolicy",
        ),
        "authorizationpolicies",
    )
}

/// The `profiles.kubeflow.org/v1` resource.
pub fn profile_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(PROFILE_GROUP, PROFILE_VERSION, PROFILE_KIND),
        PROFILE_PLURAL,
    )
}
