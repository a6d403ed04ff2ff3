-- pkgline on PostgreSQL: three roles, and the server's cannot undo the append-only history
-- (issue 14, docs/security.md, docs/operations.md).
--
-- Run by a superuser, connected to the pkgline database, before the first `pkgline db
-- upgrade` and again after every one (idempotent, one transaction):
--
--   psql -v owner_role=pkgline_owner -v server_role=pkgline -v reports_role=pkgline_reports \
--        -d pkgline -f deploy/postgresql-roles.sql
--
-- (owner_role defaults to pkgline_owner.) deploy/install.sh runs it as the local `postgres`
-- account when PKGLINE_DB is PostgreSQL on this host, before and after the upgrade.
-- Afterwards:
--   * owner_role (created NOLOGIN) owns the database, the schema `public` and every table,
--     sequence and function in it: what another role created (the server's role, owner of
--     all before this version; a `db upgrade` run as postgres) is handed to it. Migrations
--     run as it: `pkgline db upgrade --as-role pkgline_owner`, logged in as a superuser or a
--     member of it (install.sh: as postgres, peer authentication on the local socket);
--   * server_role (pkgline-api.service and pkgline.service log in as it; peer
--     authentication on the local socket, no password kept anywhere) may connect, make
--     temporary tables and use the schema; read and write the working tables; only read
--     and append to the append-only ones (a trigger calling pkgline_append_only(): lot
--     history, signatures, security events, flow approvals), no UPDATE, DELETE or TRUNCATE;
--     read, insert and update audit_heads (the chains' heads, never deleted); read
--     alembic_version; use the sequences. It owns nothing, so it can neither drop nor
--     alter a table or a trigger, and it creates nothing but temporary tables. It must not
--     be a superuser nor a member of owner_role (refused);
--   * reports_role may connect and SELECT (reports, BI tools): nothing else;
--   * nobody else (PUBLIC, and any role granted something earlier) may connect, create or
--     read and write tables. Operators hold no database credentials: they go through the
--     server. Superusers can still do anything: keep them to the DBAs.
-- Tables a later migration creates get the working grants at once (default privileges of
-- owner_role); running this again narrows a new append-only table to SELECT and INSERT.
\set ON_ERROR_STOP on
\if :{?owner_role}
\else
\set owner_role pkgline_owner
\endif

BEGIN;

SELECT format('DO $e$ BEGIN RAISE EXCEPTION %L; END $e$',
              'owner_role, server_role and reports_role must be three different roles')
 WHERE :'owner_role' IN (:'server_role', :'reports_role') OR :'server_role' = :'reports_role' \gexec

SELECT format('CREATE ROLE %I NOLOGIN', :'owner_role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'owner_role') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'server_role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'server_role') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'reports_role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'reports_role') \gexec

-- The server and the reports never act as the owner (SET ROLE would give them the tables).
SELECT format('REVOKE %I FROM %I', :'owner_role', r.rolname)
  FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member
 WHERE m.roleid = (SELECT oid FROM pg_roles WHERE rolname = :'owner_role')
   AND r.rolname IN (:'server_role', :'reports_role') \gexec
SELECT format('DO $e$ BEGIN RAISE EXCEPTION %L; END $e$',
              format('role %s is a superuser or a member of %s (through another role): it '
                     'could drop the triggers that keep the history append-only',
                     r.rolname, :'owner_role'))
  FROM pg_roles r
 WHERE r.rolname IN (:'server_role', :'reports_role')
   AND (r.rolsuper OR pg_has_role(r.oid, :'owner_role', 'MEMBER')) \gexec

-- The database: the owner's; connect only as the server or the reports role.
SELECT format('ALTER DATABASE %I OWNER TO %I', current_database(), :'owner_role') \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database()) \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), r.rolname)
  FROM pg_database d, aclexplode(d.datacl) a JOIN pg_roles r ON r.oid = a.grantee
 WHERE d.datname = current_database()
   AND r.rolname <> :'owner_role' AND NOT r.rolsuper
 GROUP BY r.rolname \gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), :'server_role') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'reports_role') \gexec

-- The schema: the owner's (it creates the tables: `pkgline db upgrade --as-role`); the
-- server and the reports only use it.
ALTER SCHEMA public OWNER TO :"owner_role";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
SELECT format('REVOKE ALL ON SCHEMA public FROM %I', r.rolname)
  FROM pg_namespace n, aclexplode(n.nspacl) a JOIN pg_roles r ON r.oid = a.grantee
 WHERE n.nspname = 'public' AND r.rolname <> :'owner_role'
 GROUP BY r.rolname \gexec
GRANT USAGE ON SCHEMA public TO :"server_role", :"reports_role";

-- What another role created (the server's role, owner of everything before; a `db upgrade`
-- run as postgres) is handed to the owner.
SELECT format('ALTER TABLE %s OWNER TO %I', c.oid::regclass, :'owner_role')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
   AND pg_get_userbyid(c.relowner) <> :'owner_role' \gexec
SELECT format('ALTER SEQUENCE %s OWNER TO %I', c.oid::regclass, :'owner_role')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind = 'S'
   AND pg_get_userbyid(c.relowner) <> :'owner_role'
   AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')) \gexec
SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, :'owner_role')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> :'owner_role' \gexec
SELECT format('ALTER TYPE %s OWNER TO %I', t.oid::regtype, :'owner_role')
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd')
   AND pg_get_userbyid(t.typowner) <> :'owner_role' \gexec

-- Every grant on a table or sequence is taken back (to PUBLIC, to any role, and the
-- server's and the reports' too: theirs are given again below, in this transaction).
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC;
SELECT format('REVOKE ALL ON %s %s FROM %I',
              CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass, r.rolname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
       aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
   AND r.rolname <> :'owner_role'
 GROUP BY c.oid, c.relkind, r.rolname \gexec

-- The server: what it does at runtime, no more. Append-only: lot_history, signatures,
-- security_events, flow_approvals, and any table a trigger calls pkgline_append_only() on
-- (a later migration's); the names too, so that a trigger dropped by a superuser does not
-- widen the grant.
SELECT format('GRANT %s ON TABLE %s TO %I',
              CASE
                WHEN c.relkind IN ('v', 'm') OR c.relname = 'alembic_version' THEN 'SELECT'
                WHEN c.relname = 'audit_heads' THEN 'SELECT, INSERT, UPDATE'
                WHEN c.relname IN ('lot_history', 'signatures', 'security_events', 'flow_approvals')
                  OR EXISTS (SELECT FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
                              WHERE t.tgrelid = c.oid AND p.proname = 'pkgline_append_only')
                  THEN 'SELECT, INSERT'
                ELSE 'SELECT, INSERT, UPDATE, DELETE'
              END,
              c.oid::regclass, :'server_role')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm') \gexec
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO :"server_role";
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA public TO :"server_role";

-- Reports read.
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reports_role";

-- The tables later migrations create (as the owner): the working grants at once; the next
-- run of this script narrows an append-only one.
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
    GRANT SELECT ON TABLES TO :"reports_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO :"server_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
    GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO :"server_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"owner_role" IN SCHEMA public
    GRANT EXECUTE ON FUNCTIONS TO :"server_role";
-- Before this version the server's role created the tables, and this script gave the
-- reports role the default grant on them: taken back (the server creates nothing now).
ALTER DEFAULT PRIVILEGES FOR ROLE :"server_role" IN SCHEMA public
    REVOKE SELECT ON TABLES FROM :"reports_role";

COMMIT;
