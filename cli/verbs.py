"""dirctl's verbs: each one's name, its line in `dirctl --help`, and the module that implements it.

Apart from the modules themselves, so that `dirctl VERB` imports VERB's module alone (and what it needs),
not every verb's: dirctl starts for every command, and importing them all cost more than listing 10,000
sites. Each module registers its verbs with the summaries here, so a verb's line cannot differ between
`dirctl --help` and the verb's own parser.
"""

from __future__ import annotations

# In the order `dirctl --help` lists them: (verb, module, summary).
VERBS = (
    ("apply", "cli.apply", "create or update Sites (and GitSources) from YAML files"),
    ("create", "cli.create", "create a user, a token, a secret or a blocked domain"),
    ("get", "cli.get", "list sites (or gitsources, users, tokens, writes...) or show one"),
    ("describe", "cli.describe", "show a site (or a user, a gitsource, the platform) in detail"),
    ("diff", "cli.diff", "show what apply would change (exit 0: none, 1: differences, >1: error)"),
    ("delete", "cli.delete", "delete sites by name or by file, or a user, token, gitsource..."),
    ("events", "cli.events", "show reconcile events, oldest first"),
    ("logs", "cli.logs", "print a dynamic site's service logs"),
    ("wait", "cli.wait", "wait until a site has a condition, or is deleted"),
    ("rollout", "cli.rollout", "a site's spec history, and going back to an earlier one"),
    ("reconcile", "cli.reconcile", "reconcile a site now, or fetch a gitsource now"),
    ("suspend", "cli.suspend", "stop applying a gitsource's new revisions and correcting drift"),
    ("resume", "cli.suspend", "apply a suspended gitsource's revisions again"),
    ("disable", "cli.users", "disable a user (admins)"),
    ("enable", "cli.users", "enable a user (admins)"),
    ("keys", "cli.keys", "your SSH keys for the shell: ssh -p 2222 you/SITE@HOST"),
    ("login", "cli.login", "log in to a Director API and save the token"),
    ("schema", "cli.schema", "print the JSON Schema of a resource kind"),
)
SUMMARY = {verb: summary for verb, _module, summary in VERBS}
MODULE = {verb: module for verb, module, _summary in VERBS}
