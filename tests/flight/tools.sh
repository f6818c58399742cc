#!/usr/bin/env bash
# The venv of the ADBC Flight SQL driver: installs it the first time, prints its python.
exec "$(dirname "$0")/../venv.sh" flight 'adbc_driver_flightsql.dbapi, pyarrow'
