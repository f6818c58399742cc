#!/usr/bin/env bash
# The venv of independent Delta readers (deltalake, DuckDB, Polars; pytz for
# DuckDB's zoned timestamps in Python): installs it the first time, prints its python.
exec "$(dirname "$0")/../venv.sh" delta 'deltalake, duckdb, polars, pytz'
