"""dirctl, the command line of Director: one module per verb, wired together in cli.main."""
