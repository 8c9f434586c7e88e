-- One database, one schema per service (each service owns its tables), plus the bus and auth.
CREATE SCHEMA IF NOT EXISTS admissions;
CREATE SCHEMA IF NOT EXISTS discharge;
CREATE SCHEMA IF NOT EXISTS snp;
CREATE SCHEMA IF NOT EXISTS notifications;
CREATE SCHEMA IF NOT EXISTS bus;
CREATE SCHEMA IF NOT EXISTS auth;
