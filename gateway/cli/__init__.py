"""The `gateway` command (typer): it imports the modules it drives, and nothing imports it.

`main` holds the app and the serve/check/doctor/demo commands; `keys` and `report` their own
command groups; `common` the options and the error exit they share.
"""
