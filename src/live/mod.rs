//! The live world: reading IAM and the cluster into an [`Observed`](crate::observed::Observed)
//! world, and executing a [`Plan`](crate::plan::Plan) against them.
//!
//! This is the only part of the library that talks to the network. Clients
//! come from the standard settings: the AWS credential chain and
//! `aws-config` (IRSA web identity in a cluster, profiles and env locally,
//! `AWS_ENDPOINT_URL` honoured) and `kube` (kubeconfig or in-cluster). There
//! is no test-only code path.

pub mod apply;
pub mod observe;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_iam::error::ProvideErrorMetadata;
use kube::api::ApiResource;
use kube::core::GroupVersionKind;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Waiting for something took too long.
    #[error("timed out after {seconds} s waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The bound.
        seconds: u64,
    },
    /// The plan cannot be executed as written.
    #[error("invalid plan: {0}")]
    InvalidPlan(String),
}

impl Error {
    /// A stable label for metrics and reports: the AWS or Kubernetes error code.
    pub fn code(&self) -> &str {
        match self {
            Error::Iam { code, .. } | Error::Kube { code, .. } => code,
            Error::Timeout { .. } => "Timeout",
            Error::InvalidPlan(_) => "InvalidPlan",
        }
    }

    pub(crate) fn iam<E, R>(operation: &'static str, e: aws_sdk_iam::error::SdkError<E, R>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        let code = e.code().map(String::from).unwrap_or_else(|| {
            match &e {
                aws_sdk_iam::error::SdkError::TimeoutError(_) => "Timeout",
                aws_sdk_iam::error::SdkError::DispatchFailure(_) => "DispatchFailure",
                aws_sdk_iam::error::SdkError::ResponseError(_) => "ResponseError",
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

    pub(crate) fn kube(operation: impl Into<String>, e: kube::Error) -> Error {
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

    /// True for the IAM "not found" error.
    pub fn is_no_such_entity(&self) -> bool {
        self.code() == "NoSuchEntity"
    }
}

/// API calls made, by operation, for reports, metrics and benchmarks.
#[derive(Debug, Default)]
pub struct CallCounter {
    counts: Mutex<BTreeMap<String, u64>>,
    total: AtomicU64,
}

impl CallCounter {
    /// Counts one call of `op`.
    pub fn add(&self, op: &str) {
        self.add_n(op, 1);
    }

    /// Counts `n` calls of `op`.
    pub fn add_n(&self, op: &str, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
        *self
            .counts
            .lock()
            .expect("counter lock")
            .entry(op.to_string())
            .or_default() += n;
    }

    /// Calls by operation.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().expect("counter lock").clone()
    }
}

/// The clients kftenant uses, and what it has done with them.
#[derive(Clone)]
pub struct Clients {
    /// IAM.
    pub iam: aws_sdk_iam::Client,
    /// Kubernetes.
    pub kube: kube::Client,
    /// Calls made (IAM operations as `iam:<Action>`, Kubernetes as `kube:<verb>`).
    pub calls: std::sync::Arc<CallCounter>,
}

impl Clients {
    /// Clients from the standard settings. `region` is used when the
    /// environment names none (IAM is global; any region signs).
    pub async fn from_env(region: &str, max_attempts: u32) -> anyhow::Result<Clients> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .retry_config(RetryConfig::adaptive().with_max_attempts(max_attempts));
        if std::env::var_os("AWS_REGION").is_none()
            && std::env::var_os("AWS_DEFAULT_REGION").is_none()
        {
            loader = loader.region(aws_config::Region::new(region.to_string()));
        }
        let sdk = loader.load().await;
        let kube = kube::Client::try_default().await.map_err(|e| {
            anyhow::anyhow!("connecting to Kubernetes (KUBECONFIG or in-cluster): {e}")
        })?;
        Ok(Clients {
            iam: aws_sdk_iam::Client::new(&sdk),
            kube,
            calls: Default::default(),
        })
    }
}

/// The `profiles.kubeflow.org/v1` resource.
pub fn profile_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("kubeflow.org", "v1", "Profile"),
        "profiles",
    )
}
