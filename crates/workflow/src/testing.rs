//! Hooks for this crate's tests (feature `testing`): not part of the API.

use crate::types::WorkflowInfo;

impl WorkflowInfo {
    /// The header as the scripts store it (the corruption tests write around it).
    pub fn encode_header(&self) -> Vec<u8> {
        self.encode()
    }
}
