//! The sandboxes one MCP session made without `keep`: closed when the session ends, so an
//! agent that forgets `close_sandbox`, or a client that dies, leaves nothing running. Over stdio
//! the session ends when stdin does (`stdio.rs` closes them, then exits); over HTTP when rmcp
//! drops the session's tool server (the client deleted the session or it went idle), which
//! drops the last [`Owned`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use super::client::{ApiClient, ClientError, as_caller, current_caller, encode};

/// The sandboxes a session owns, shared by every clone of its tool server.
#[derive(Debug, Clone)]
pub struct Owned(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    client: ApiClient,
    /// Each sandbox, with the credential of the caller that made it (over `/mcp`): the one its
    /// close is sent with.
    ids: Mutex<BTreeMap<String, Option<String>>>,
}

impl Owned {
    pub fn new(client: ApiClient) -> Owned {
        Owned(Arc::new(Inner { client, ids: Mutex::new(BTreeMap::new()) }))
    }

    /// Close `id` when the session ends.
    pub fn own(&self, id: &str) {
        self.0.ids().insert(id.to_owned(), current_caller());
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
    fn ids(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Option<String>>> {
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
async fn close(client: &ApiClient, ids: BTreeMap<String, Option<String>>) {
    for (id, credential) in ids {
        match as_caller(credential, client.delete(&format!("/sandboxes/{}", encode(&id)))).await {
            Ok(()) => tracing::info!(sandbox = %id, "closed a sandbox its MCP session made"),
            Err(ClientError::Refused { status: 404, .. }) => {}
            Err(error) => tracing::warn!(sandbox = %id, %error, "could not close a sandbox its MCP session made"),
        }
    }
}
