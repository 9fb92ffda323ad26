"""The PostgreSQL ledger's tables, append-only triggers, append functions and role grants, as SQL.

:class:`~dpsynth.privacy.ledger.postgres.PostgresLedger` installs this once
per ledger schema (``install``). What the database enforces lives here: the
operator and approver roles hold no table privilege, only EXECUTE on the
append functions of their role; the functions check that a record follows
the head, that its timestamp is close to the server's clock, and that a
spend's stated composed total is within the dataset's cap and not below the
previous one; a trigger refuses UPDATE, DELETE and TRUNCATE for everyone.
The composition itself (PLD / RDP) runs in the client: ``verify`` recomputes
it, which is what catches a client that states a false total.
"""

from __future__ import annotations

import re

from psycopg import sql

from dpsynth.errors import UsageError
from dpsynth.privacy.ledger.records import DECISIONS, FINAL_STATUSES

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,39}$")


def role_names(prefix: str) -> dict[str, str]:
    """The three group roles of a ledger installed with ``prefix``: admin, operator, approver."""
    if not isinstance(prefix, str) or not _IDENTIFIER.match(prefix) or len(prefix) > 30:
        raise UsageError(
            f"roles prefix must be a lower-case SQL identifier of at most 30 characters, got {prefix!r}",
            parameter="roles_prefix",
        )
    return {"admin": f"{prefix}_admin", "operator": f"{prefix}_operator", "approver": f"{prefix}_approver"}


# Server-side checks tolerate this much clock skew between client and server (seconds), and this
# much relative decrease of a dataset's composed total (the accountants' discretisation).
CLOCK_SKEW = 300
TOTAL_SLACK = 1e-3

_SCHEMA_SQL = """
CREATE TABLE {s}.meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE {s}.entries (
    id bigint PRIMARY KEY CHECK (id > 0),
    kind text NOT NULL CHECK (kind IN ('dataset', 'spend', 'status')),
    dataset_id text NOT NULL,
    created_at text NOT NULL,
    epsilon_cap double precision, delta_cap double precision,
    mechanism text, generator text, purpose text, epsilon double precision, delta double precision,
    accountant text, event_json text, details_json text, parameters_json text,
    total_epsilon_after double precision,
    ref_id bigint, status text,
    prev_hash text NOT NULL,
    hash text NOT NULL UNIQUE
);
CREATE INDEX entries_dataset ON {s}.entries (dataset_id, kind);

CREATE FUNCTION {s}.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'dpsynth ledger: % on %.% refused: the ledger is append-only', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER entries_append_only BEFORE UPDATE OR DELETE ON {s}.entries
    FOR EACH ROW EXECUTE FUNCTION {s}.refuse_change();
CREATE TRIGGER entries_no_truncate BEFORE TRUNCATE ON {s}.entries
    FOR EACH STATEMENT EXECUTE FUNCTION {s}.refuse_change();

CREATE FUNCTION {s}.meta_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.key = NEW.key AND OLD.key IN ('head_id', 'head_hash') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'dpsynth ledger: % of ledger metadata refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER meta_guard BEFORE UPDATE OR DELETE ON {s}.meta FOR EACH ROW EXECUTE FUNCTION {s}.meta_guard();
CREATE TRIGGER meta_no_truncate BEFORE TRUNCATE ON {s}.meta FOR EACH STATEMENT EXECUTE FUNCTION {s}.refuse_change();

-- Lock the head (every writer goes through here first), return it.
CREATE FUNCTION {s}.begin_append(OUT head_id bigint, OUT head_hash text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    SELECT value::bigint INTO head_id FROM {s}.meta WHERE key = 'head_id' FOR UPDATE;
    SELECT value INTO head_hash FROM {s}.meta WHERE key = 'head_hash';
END $$;

-- The record must extend the head; its time must be the server's; then the head moves.
CREATE FUNCTION {s}._link(p_id bigint, p_created_at text, p_prev_hash text, p_hash text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_head bigint;
    v_hash text;
BEGIN
    SELECT h.head_id, h.head_hash INTO v_head, v_hash FROM {s}.begin_append() h;
    IF p_id IS DISTINCT FROM v_head + 1 OR p_prev_hash IS DISTINCT FROM v_hash THEN
        RAISE EXCEPTION 'dpsynth ledger: record % does not extend the head (entry %, hash %)', p_id, v_head,
            left(v_hash, 12) USING ERRCODE = 'serialization_failure';
    END IF;
    IF p_hash IS NULL OR p_hash !~ '^[0-9a-f]{{64}}$' THEN
        RAISE EXCEPTION 'dpsynth ledger: record hash must be 64 hex digits' USING ERRCODE = 'check_violation';
    END IF;
    IF abs(extract(epoch FROM clock_timestamp() - p_created_at::timestamptz)) > {skew} THEN
        RAISE EXCEPTION 'dpsynth ledger: record time % is more than {skew} s from the server''s clock', p_created_at
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE {s}.meta SET value = p_id::text WHERE key = 'head_id';
    UPDATE {s}.meta SET value = p_hash WHERE key = 'head_hash';
END $$;

CREATE FUNCTION {s}.append_dataset(p_id bigint, p_dataset_id text, p_created_at text, p_epsilon_cap double precision,
                                   p_delta_cap double precision, p_prev_hash text, p_hash text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM {s}._link(p_id, p_created_at, p_prev_hash, p_hash);
    IF EXISTS (SELECT 1 FROM {s}.entries WHERE kind = 'dataset' AND dataset_id = p_dataset_id) THEN
        RAISE EXCEPTION 'dpsynth ledger: dataset % already has a budget; caps are never reset', p_dataset_id
            USING ERRCODE = 'unique_violation';
    END IF;
    IF NOT (p_epsilon_cap > 0 AND p_epsilon_cap < 'Infinity' AND p_delta_cap > 0 AND p_delta_cap < 1) THEN
        RAISE EXCEPTION 'dpsynth ledger: invalid caps epsilon=%, delta=%', p_epsilon_cap, p_delta_cap
            USING ERRCODE = 'check_violation';
    END IF;
    INSERT INTO {s}.entries (id, kind, dataset_id, created_at, epsilon_cap, delta_cap, prev_hash, hash)
    VALUES (p_id, 'dataset', p_dataset_id, p_created_at, p_epsilon_cap, p_delta_cap, p_prev_hash, p_hash);
END $$;

CREATE FUNCTION {s}.append_spend(p_id bigint, p_dataset_id text, p_created_at text, p_mechanism text,
                                 p_generator text, p_purpose text, p_epsilon double precision,
                                 p_delta double precision, p_accountant text, p_event_json text,
                                 p_details_json text, p_parameters_json text, p_total double precision,
                                 p_prev_hash text, p_hash text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_cap double precision;
    v_delta_cap double precision;
    v_previous double precision;
BEGIN
    PERFORM {s}._link(p_id, p_created_at, p_prev_hash, p_hash);
    SELECT epsilon_cap, delta_cap INTO v_cap, v_delta_cap FROM {s}.entries
        WHERE kind = 'dataset' AND dataset_id = p_dataset_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dpsynth ledger: dataset % has no budget', p_dataset_id USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF NOT (p_epsilon >= 0 AND p_epsilon < 'Infinity' AND p_delta >= 0 AND p_delta <= v_delta_cap) THEN
        RAISE EXCEPTION 'dpsynth ledger: spend epsilon=%, delta=% refused (delta cap %)', p_epsilon, p_delta,
            v_delta_cap USING ERRCODE = 'check_violation';
    END IF;
    IF NOT (p_total >= 0 AND p_total <= v_cap) THEN
        RAISE EXCEPTION 'dpsynth ledger: stated composed total epsilon=% is over the cap % of dataset %',
            p_total, v_cap, p_dataset_id USING ERRCODE = 'check_violation';
    END IF;
    SELECT total_epsilon_after INTO v_previous FROM {s}.entries WHERE kind = 'spend' AND dataset_id = p_dataset_id
        ORDER BY id DESC LIMIT 1;
    IF v_previous IS NOT NULL AND p_total < v_previous * (1 - {slack}) THEN
        RAISE EXCEPTION 'dpsynth ledger: stated composed total epsilon=% is below the previous total % of dataset %: '
            'composition never lowers a total', p_total, v_previous, p_dataset_id USING ERRCODE = 'check_violation';
    END IF;
    PERFORM p_event_json::jsonb, p_details_json::jsonb, p_parameters_json::jsonb;  -- well-formed JSON
    INSERT INTO {s}.entries (id, kind, dataset_id, created_at, mechanism, generator, purpose, epsilon, delta,
                             accountant, event_json, details_json, parameters_json, total_epsilon_after,
                             prev_hash, hash)
    VALUES (p_id, 'spend', p_dataset_id, p_created_at, p_mechanism, p_generator, p_purpose, p_epsilon, p_delta,
            p_accountant, p_event_json, p_details_json, p_parameters_json, p_total, p_prev_hash, p_hash);
END $$;

-- A status record about an earlier spend of the same dataset, at most one of each family per spend.
CREATE FUNCTION {s}._append_status(p_id bigint, p_dataset_id text, p_created_at text, p_ref_id bigint,
                                   p_status text, p_details_json text, p_prev_hash text, p_hash text,
                                   p_family text[]) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM {s}._link(p_id, p_created_at, p_prev_hash, p_hash);
    IF NOT (p_status = ANY (p_family)) THEN
        RAISE EXCEPTION 'dpsynth ledger: status % refused here', p_status USING ERRCODE = 'check_violation';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM {s}.entries WHERE id = p_ref_id AND kind = 'spend' AND dataset_id = p_dataset_id) THEN
        RAISE EXCEPTION 'dpsynth ledger: no spend % on dataset %', p_ref_id, p_dataset_id
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF EXISTS (SELECT 1 FROM {s}.entries WHERE kind = 'status' AND ref_id = p_ref_id AND status = ANY (p_family)) THEN
        RAISE EXCEPTION 'dpsynth ledger: spend % already has a % record', p_ref_id, p_family[1]
            USING ERRCODE = 'unique_violation';
    END IF;
    INSERT INTO {s}.entries (id, kind, dataset_id, created_at, ref_id, status, details_json, prev_hash, hash)
    VALUES (p_id, 'status', p_dataset_id, p_created_at, p_ref_id, p_status, p_details_json, p_prev_hash, p_hash);
END $$;

CREATE FUNCTION {s}.append_status(p_id bigint, p_dataset_id text, p_created_at text, p_ref_id bigint, p_status text,
                                  p_prev_hash text, p_hash text) RETURNS void
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT {s}._append_status(p_id, p_dataset_id, p_created_at, p_ref_id, p_status, NULL, p_prev_hash, p_hash,
                              ARRAY[{final}]);
$$;

CREATE FUNCTION {s}.append_decision(p_id bigint, p_dataset_id text, p_created_at text, p_ref_id bigint,
                                    p_status text, p_details_json text, p_prev_hash text, p_hash text) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF coalesce(p_details_json::jsonb ->> 'by', '') = '' THEN
        RAISE EXCEPTION 'dpsynth ledger: a decision names who made it' USING ERRCODE = 'check_violation';
    END IF;
    PERFORM {s}._append_status(p_id, p_dataset_id, p_created_at, p_ref_id, p_status, p_details_json, p_prev_hash,
                               p_hash, ARRAY[{decisions}]);
END $$;

REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {s} FROM PUBLIC;
GRANT USAGE ON SCHEMA {s} TO {operator}, {approver};
GRANT SELECT ON {s}.entries, {s}.meta TO {operator}, {approver};
GRANT EXECUTE ON FUNCTION {s}.begin_append() TO {operator}, {approver};
GRANT EXECUTE ON FUNCTION {s}.append_spend(bigint, text, text, text, text, text, double precision, double precision,
    text, text, text, text, double precision, text, text) TO {operator};
GRANT EXECUTE ON FUNCTION {s}.append_status(bigint, text, text, bigint, text, text, text) TO {operator};
GRANT EXECUTE ON FUNCTION {s}.append_decision(bigint, text, text, bigint, text, text, text, text) TO {approver};
"""


def schema_sql(schema: str, roles: dict[str, str]) -> sql.Composed:
    def literals(values: tuple[str, ...]) -> str:
        return ", ".join(f"'{v}'" for v in values)  # our own constants: plain identifiers-safe words

    text = (
        _SCHEMA_SQL.replace("{skew}", str(CLOCK_SKEW))
        .replace("{slack}", repr(TOTAL_SLACK))
        .replace("{final}", literals(FINAL_STATUSES))
        .replace("{decisions}", literals(DECISIONS))
    )
    return sql.SQL(text).format(
        s=sql.Identifier(schema),
        admin=sql.Identifier(roles["admin"]),
        operator=sql.Identifier(roles["operator"]),
        approver=sql.Identifier(roles["approver"]),
    )
