//! A run's output on its way out: passed on up to a combined limit on both streams (the head is
//! kept), and past it a little more kept aside, never shown, only so that a secret the limit
//! cuts in two is still recognised and redacted.

use tokio::sync::mpsc;

use super::docker::Chunk;

/// Output kept past the limit, per stream, only so that a secret the limit cuts in two is
/// still recognised and redacted; it is never returned.
pub const LOOKAHEAD_BYTES: usize = 16 * 1024;

/// The output of one run (a program, a command or a cell).
pub struct Output {
    /// Closed once the limit is reached, so the screen knows at once that the output ended
    /// there (and never releases a held piece by itself while the run is being stopped).
    sink: Option<mpsc::Sender<Chunk>>,
    /// Bytes that may still be passed on, of `limit`.
    pub room: u64,
    limit: u64,
    /// The limit was reached.
    pub limited: bool,
    pub stdout_beyond: Vec<u8>,
    pub stderr_beyond: Vec<u8>,
}

impl Output {
    pub fn new(limit: u64, sink: mpsc::Sender<Chunk>) -> Output {
        Output {
            sink: Some(sink),
            room: limit,
            limit,
            limited: false,
            stdout_beyond: Vec::new(),
            stderr_beyond: Vec::new(),
        }
    }

    /// The sink, when nothing was passed on yet (a run that never started gives it back).
    pub fn untouched_sink(self) -> Option<mpsc::Sender<Chunk>> {
        let untouched = !self.limited && self.stdout_beyond.is_empty() && self.stderr_beyond.is_empty();
        self.sink.filter(|_| untouched && self.room == self.limit)
    }

    /// Pass on a chunk, as much of it as fits (waiting while the screen is behind: the channel
    /// is bounded, so a slow reader slows the program rather than filling memory). Once the
    /// limit is reached the channel closes.
    pub async fn push(&mut self, chunk: Chunk) {
        let kept = self.fit(chunk);
        if let (Some(kept), Some(sink)) = (kept, &self.sink) {
            // Nobody listening any more is fine: the run still ends, is recorded and cleaned up.
            let _ = sink.send(kept).await;
        }
        if self.limited {
            self.sink = None;
        }
    }

    /// Count a chunk against the limit: the part that fits, to pass on; the rest goes to the
    /// lookahead.
    pub fn fit(&mut self, chunk: Chunk) -> Option<Chunk> {
        let (bytes, beyond) = match &chunk {
            Chunk::Stdout(bytes) => (bytes, &mut self.stdout_beyond),
            Chunk::Stderr(bytes) => (bytes, &mut self.stderr_beyond),
        };
        let fits = bytes.len().min(usize::try_from(self.room).unwrap_or(usize::MAX));
        self.room -= fits as u64;
        if fits < bytes.len() {
            self.limited = true;
            let wanted = LOOKAHEAD_BYTES.saturating_sub(beyond.len());
            let rest = &bytes[fits..];
            beyond.extend_from_slice(&rest[..rest.len().min(wanted)]);
        }
        (fits > 0).then(|| match chunk {
            Chunk::Stdout(bytes) => Chunk::Stdout(bytes.slice(..fits)),
            Chunk::Stderr(bytes) => Chunk::Stderr(bytes.slice(..fits)),
        })
    }

    /// Is the lookahead past the limit as long as it gets?
    pub fn lookahead_full(&self) -> bool {
        self.stdout_beyond.len() + self.stderr_beyond.len() >= LOOKAHEAD_BYTES
    }
}
