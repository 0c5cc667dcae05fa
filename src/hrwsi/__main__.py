"""`python -m hrwsi` runs the command line."""

from hrwsi.cli import app

app(prog_name="hrwsi")
