//! The S3 backend (owned by the S3 work, issue 3). Not built yet.

use super::OpenOptions;
use crate::error::BackendError;

#[derive(Debug)]
pub struct S3Backend;

impl S3Backend {
    pub fn open(url: &str, _opts: &OpenOptions) -> Result<Self, BackendError> {
        Err(BackendError::Unusable {
            location: format!("s3://{url}"),
            message: "the S3 backend is not built yet".into(),
        })
    }
}
