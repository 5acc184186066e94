//! The sandboxes one MCP session made without `keep`: closed when the session ends, so an
//! agent that forgets `close_sandbox`, or a client that dies, leaves nothing running. Over stdio
//! the session ends when stdin does (`stdio.rs` closes them, then exits); over HTTP when rmcp
//! drops the session's tool server (the client deleted the session or it went idle), which
//! drops the last [`Owned`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};

use super::client::{ApiClient, ClientError, encode};

/// The sandboxes a session owns, shared by every clone of its tool server.
#[derive(Debug, Clone)]
pub struct Owned(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    client: ApiClient,
    ids: Mutex<BTreeSet<String>>,
}

impl Owned {
    pub fn new(client: ApiClient) -> Owned {
        Owned(Arc::new(Inner { client, ids: Mutex::new(BTreeSet::new()) }))
    }

    /// Close `id` when the session ends.
    pub fn own(&self, id: &str) {
        self.0.ids().insert(id.to_owned());
    }

    /// `id` is gone (closed by a tool call): nothing to do for it at the end.
    pub fn forget(&self, id: &str) {
        self.0.ids().remove(id);
    }

    /// Close every sandbox the session owns, now; each is forgotten, closed or not.
    pub async fn close_all(&self) {
        let ids = std::mem::take(&mut *self.0.ids());
        close(&self.0.client, ids).await;
    }
}

impl Inner {
    fn ids(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        // A panic while holding the set leaves a set still worth closing.
        self.ids.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Inner {
    /// The session's last tool server is gone: close what it owned, in the background (a drop
    /// cannot wait). Without a runtime to do it on, say so; the sandboxes' `on_timeout: kill`
    /// removes them at their idle timeout anyway.
    fn drop(&mut self) {
        let ids = std::mem::take(self.ids.get_mut().unwrap_or_else(PoisonError::into_inner));
        if ids.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let client = self.client.clone();
                runtime.spawn(async move { close(&client, ids).await });
            }
            Err(_) => tracing::warn!(
                sandboxes = ?ids,
                "an MCP session ended with no runtime to close its sandboxes on; their idle timeout removes them"
            ),
        }
    }
}

/// `DELETE` each sandbox; one already gone is what was wanted.
async fn close(client: &ApiClient, ids: BTreeSet<String>) {
    for id in ids {
        match client.delete(&format!("/sandboxes/{}", encode(&id))).await {
            Ok(()) => tracing::info!(sandbox = %id, "closed a sandbox its MCP session made"),
            Err(ClientError::Refused { status: 404, .. }) => {}
            Err(error) => tracing::warn!(sandbox = %id, %error, "could not close a sandbox its MCP session made"),
        }
    }
}
