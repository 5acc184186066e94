-- Tokens ended before their time (a browser's sign-out): a token names its id (`jti`), and one
-- listed here is refused. A row is kept until the token would have expired anyway.

CREATE TABLE revoked_tokens (
  jti        TEXT PRIMARY KEY,
  expires_at INTEGER NOT NULL              -- Unix seconds
) STRICT;
