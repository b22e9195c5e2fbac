#!/bin/sh
# Runs once, when the postgres image initialises an empty data directory (/docker-entrypoint-initdb.d):
# the roles of src/kubernaut/store/roles.py. The superuser (POSTGRES_USER) only does this; the owner role
# kubernaut owns the database and runs the migrations, which grant the services' roles what they use.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v owner_pw="$OWNER_PASSWORD" -v gateway_pw="$GATEWAY_PASSWORD" -v context_api_pw="$CONTEXT_API_PASSWORD" <<'SQL'
CREATE ROLE kubernaut LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'owner_pw';
CREATE ROLE kubernaut_gateway LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'gateway_pw';
CREATE ROLE kubernaut_context_api LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD :'context_api_pw';
ALTER DATABASE kubernaut OWNER TO kubernaut;
REVOKE ALL ON DATABASE kubernaut FROM PUBLIC;
GRANT CONNECT ON DATABASE kubernaut TO kubernaut, kubernaut_gateway, kubernaut_context_api;
SQL
