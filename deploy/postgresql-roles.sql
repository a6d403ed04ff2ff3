-- pkgline on PostgreSQL: the database is the server's alone (issue 14, docs/operations.md).
--
-- Run by a superuser, connected to the pkgline database, once after creating it and again
-- after every `pkgline db upgrade` run as another role (idempotent):
--
--   psql -v server_role=pkgline -v reports_role=pkgline_reports -d pkgline \
--        -f deploy/postgresql-roles.sql
--
-- deploy/install.sh runs it as the local `postgres` account when PKGLINE_DB is PostgreSQL
-- on this host. Afterwards:
--   * server_role (pkgline-api.service and pkgline.service log in as it; with peer
--     authentication on the local socket no password is kept anywhere) owns the schema
--     `public`, every table, sequence and function in it, and so alone may write;
--   * reports_role may connect and SELECT (reports, BI tools): nothing else;
--   * nobody else (PUBLIC, and any role granted something earlier) may connect, create or
--     read and write tables. Operators hold no database credentials: they go through the
--     server. Superusers can still do anything: keep them to the DBAs.
-- The append-only triggers on the history (migration 0004) keep even the server's role from
-- rewriting it.
\set ON_ERROR_STOP on

SELECT format('CREATE ROLE %I LOGIN', :'server_role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'server_role') \gexec
SELECT format('CREATE ROLE %I LOGIN', :'reports_role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'reports_role') \gexec

-- The database: connect only as the server or the reports role.
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database()) \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM %I', current_database(), r.rolname)
  FROM pg_database d, aclexplode(d.datacl) a JOIN pg_roles r ON r.oid = a.grantee
 WHERE d.datname = current_database()
   AND r.rolname NOT IN (:'server_role', :'reports_role') AND NOT r.rolsuper
 GROUP BY r.rolname \gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), :'server_role') \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'reports_role') \gexec

-- The schema: the server's (it creates the tables: `pkgline db upgrade`).
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO :"server_role";
GRANT USAGE ON SCHEMA public TO :"reports_role";

-- What another role created (a `db upgrade` run as postgres, say) is handed to the server.
SELECT format('ALTER TABLE %s OWNER TO %I', c.oid::regclass, :'server_role')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm')
   AND pg_get_userbyid(c.relowner) <> :'server_role' \gexec
SELECT format('ALTER SEQUENCE %s OWNER TO %I', c.oid::regclass, :'server_role')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = 'public' AND c.relkind = 'S'
   AND pg_get_userbyid(c.relowner) <> :'server_role'
   AND NOT EXISTS (SELECT FROM pg_depend d WHERE d.objid = c.oid AND d.deptype IN ('a', 'i')) \gexec
SELECT format('ALTER FUNCTION %s OWNER TO %I', p.oid::regprocedure, :'server_role')
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE n.nspname = 'public' AND pg_get_userbyid(p.proowner) <> :'server_role' \gexec

-- Nobody but the owner writes: every grant to PUBLIC or another role is taken back.
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM PUBLIC;
SELECT format('REVOKE ALL ON %s %s FROM %I',
              CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, c.oid::regclass, r.rolname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
       aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'S')
   AND r.rolname <> :'server_role'
 GROUP BY c.oid, c.relkind, r.rolname \gexec

-- Reports read, now and in the tables later migrations create.
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"reports_role";
ALTER DEFAULT PRIVILEGES FOR ROLE :"server_role" IN SCHEMA public
    GRANT SELECT ON TABLES TO :"reports_role";
