-- Experiment store schema, version 1 (scaling.store.SCHEMA_VERSION).
-- Applied to a new store; older stores are migrated by scaling.store.MIGRATIONS.
-- The view `final` is not here: its pivoted eval columns depend on the data, so
-- scaling.store recreates it after every ingest.

CREATE TABLE IF NOT EXISTS meta (
    key VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- One row per training run, from the run directory's run.json.
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    sweep VARCHAR,
    status VARCHAR NOT NULL CHECK (status IN ('running', 'finished', 'diverged', 'failed')),
    created_at TIMESTAMP,              -- UTC
    code_version VARCHAR,
    config JSON NOT NULL,              -- the full run configuration
    d_model INTEGER,
    n_layers INTEGER,
    n_heads INTEGER,
    d_ff INTEGER,
    n_experts INTEGER,
    top_k INTEGER,
    vocab_size INTEGER,
    seq_len INTEGER,
    n_total BIGINT,
    n_active BIGINT,
    n_total_nonembed BIGINT,
    n_active_nonembed BIGINT,
    flops_per_token DOUBLE,
    tokens_planned BIGINT,
    seed BIGINT,
    -- ingest bookkeeping: sha256 over the run directory's files, for idempotence
    content_hash VARCHAR,
    source_dir VARCHAR,
    ingested_at TIMESTAMP
);

-- Training curves, long format. NaN/inf values are kept (a diverging run); see scaling.rundir.
CREATE TABLE IF NOT EXISTS metrics (
    run_id VARCHAR NOT NULL,
    step BIGINT NOT NULL,
    tokens BIGINT NOT NULL,
    name VARCHAR NOT NULL,
    value DOUBLE
);

CREATE TABLE IF NOT EXISTS evals (
    run_id VARCHAR NOT NULL,
    step BIGINT NOT NULL,
    tokens BIGINT NOT NULL,
    task VARCHAR NOT NULL,
    task_kind VARCHAR NOT NULL CHECK (task_kind IN ('memorization', 'reasoning', 'other')),
    metric VARCHAR NOT NULL,           -- accuracy, task_loss, ...
    value DOUBLE,
    n_examples BIGINT
);

CREATE TABLE IF NOT EXISTS fits (
    fit_id VARCHAR PRIMARY KEY,
    law VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL,     -- UTC
    spec JSON,                         -- data source, variables, where, loss, ...
    params JSON,                       -- name -> value
    ci JSON,                           -- name -> [lo, hi]
    objective DOUBLE,
    n_points INTEGER,
    fingerprint VARCHAR                -- hash of the fitted data
);
