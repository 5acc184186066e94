//! The HTTP server: builds the actix app over the services and runs it until a signal stops it.
//! Slow and idle clients are bounded here (request heads, keep-alive, connections at once); slow
//! request bodies where they are read (`api::read_json`, `POST /upload`).

use std::num::NonZeroUsize;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use tracing_actix_web::TracingLogger;

use crate::api;
use crate::config::Config;
use crate::services::{Services, StartError};

/// How long an idle HTTP connection stays open (nginx's default).
const KEEP_ALIVE: Duration = Duration::from_secs(75);

/// How long a new connection has to send its first request's head (actix's own default, set
/// here to be seen): one that sends nothing, or its headers a byte at a time, gets 408 and is
/// closed. actix times only the first head of a connection: later ones have the keep-alive
/// time to start, and then no limit, so `TRACEBOX_MAX_CONNECTIONS` is what bounds them.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Worker threads: one per CPU, as actix would choose, counted here so that the connection cap
/// (which actix takes per worker) can be shared out.
fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, NonZeroUsize::get).clamp(1, 512)
}

/// Run the server until SIGINT or SIGTERM, then let runs finish, remove every container and
/// commit the last traces.
pub fn serve(config: Config) -> Result<(), StartError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tracebox-run")
        .build()
        .map_err(StartError::Runtime)?;
    let services = Services::open(config, runtime.handle().clone())?;
    let _lock = runtime.block_on(services.prepare_server())?;
    let sweeper = services.spawn_sweeper(runtime.handle());
    // The sandboxes listen before the first heartbeat can bring a node back.
    let followers = services.spawn_node_followers(runtime.handle());
    let keepers = services.nodes.spawn_keepers(runtime.handle());
    let reaper = services.spawn_sandbox_reaper(runtime.handle());

    let result = actix_web::rt::System::new().block_on(listen(services.clone()));

    sweeper.abort();
    for task in keepers.into_iter().chain(std::iter::once(followers)) {
        task.abort();
    }
    reaper.abort();
    runtime.block_on(services.shutdown());
    tracing::info!("stopped");
    result
}

async fn listen(services: Services) -> Result<(), StartError> {
    let addr = services.config.addr;
    // In-flight runs may take their whole timeout to finish before the server stops.
    let grace = Duration::from_secs_f64(services.config.max_timeout_secs) + Duration::from_secs(5);
    let workers = workers();
    let connections_per_worker = services.config.max_connections.div_ceil(workers);
    let mcp = web::Data::new(api::McpDoor::default());
    let config = std::sync::Arc::clone(&services.config);
    let state = web::Data::new(services);
    let app_mcp = mcp.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(app_mcp.clone())
            .wrap(api::security_headers())
            .wrap(TracingLogger::default())
            .configure(api::routes)
    })
    .shutdown_timeout(grace.as_secs())
    // Longer than common client pools keep idle connections, so a client rarely sends a
    // request on a connection the server is closing.
    .keep_alive(KEEP_ALIVE)
    .client_request_timeout(HEAD_TIMEOUT)
    // A streamed answer (MCP's and Claude's events, exports) is written as its head, then each
    // piece as it comes: with Nagle's algorithm a small piece waits for the ACK of the last,
    // which the client delays (40 ms on Linux). Every MCP tool call over HTTP paid that.
    .tcp_nodelay(true)
    .workers(workers)
    // Past it a worker stops accepting; connections wait in the listen backlog rather than take
    // the file descriptors that Docker, SQLite and uploads need.
    .max_connections(connections_per_worker)
    .bind(addr)
    .map_err(|source| StartError::Bind { addr, source })?;
    let bound = server.addrs();
    // `/mcp`'s tools call this server's API where it listens; the first address will do.
    if let Some(first) = bound.first() {
        mcp.open(*first, &config)?;
    }
    for bound in bound {
        tracing::info!(url = %format!("http://{bound}"), "listening");
    }
    // actix stops on the same signals; MCP's event streams would hold its graceful stop open.
    actix_web::rt::spawn(async move {
        stop_signal().await;
        mcp.stop();
    });
    server.run().await.map_err(StartError::Server)
}

/// SIGINT or SIGTERM, the signals actix stops on (never, if they cannot be listened for).
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
