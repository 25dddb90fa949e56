-- API keys with scopes (issue 11): read, write, admin. The key configured as
-- JOURNEYS_API_KEY is not stored here; it stays valid with every scope.
--
-- Only a SHA-256 digest of each key is kept, never the key. A key is 32 random bytes
-- (`jk_` + 43 URL-safe characters, 256 bits), so nobody can guess one from its digest,
-- with or without a salt or a slow hash: those protect passwords people choose, which
-- are few enough to try one by one. A plain digest also lets a request find its key
-- with one lookup in a unique index, where a salted hash would have to be recomputed
-- against every row.
CREATE TABLE api_keys (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name            text NOT NULL,
    prefix          text NOT NULL,          -- the key's first characters, to recognise it by
    hash            bytea NOT NULL CHECK (octet_length(hash) = 32),  -- sha256(key)
    scopes          text[] NOT NULL
                    CHECK (cardinality(scopes) > 0
                           AND scopes <@ ARRAY['read', 'write', 'admin']::text[]),
    created_at      timestamptz NOT NULL DEFAULT now(),
    revoked_at      timestamptz,
    last_used_at    timestamptz             -- updated at most once a minute
);

-- The lookup of every request made with a stored key.
CREATE UNIQUE INDEX api_keys_hash ON api_keys (hash);
-- A name is unique among the keys in use; a revoked key's name may be given again.
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;
