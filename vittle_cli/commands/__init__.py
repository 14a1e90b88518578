"""CLI command modules. vittle_cli.cli imports every module here and calls its
`register(app: typer.Typer, inspect_app: typer.Typer) -> None`. Keep module top levels free of torch,
transformers and friends: import them inside the command function, so `vittle --help` stays fast."""
