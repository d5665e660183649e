"""One module per ``probe`` subcommand, each with ``add_parser(subparsers)`` and ``run(args)``."""
